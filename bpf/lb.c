//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * rspxdp load balancer: steers flows sent to a pool's virtual service
 * (VIP, port, protocol) to a pool element, keeping each flow on its PE through
 * a connection table and choosing new flows' PEs with a per-service Maglev
 * ring. Everything else is passed untouched.
 *
 * Only the Go loader (package loader) writes these maps; the program writes
 * the connection table, the counters and the flood guard state.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb.h"

/* ICMP headers spelled out: linux/icmp.h drags in glibc's socket headers. */
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest; /* unused or MTU */
};
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMPV6_PKT_TOOBIG 2

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

#define MAX_SERVICES 1024
#define MAX_BACKENDS 16384
#define RING_SIZE 65537
#define RING_ENTRIES ((RING_SIZE + RING_LANES - 1) / RING_LANES)
#define CONN_ENTRIES 262144
#define TX_PORTS 64

/* Virtual services by VIP, port and protocol: every service, the
 * authoritative table (the loader restores from it). The data path reads it
 * only for a key whose lb_vips slot is shared. Written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct vip_key);
	__type(value, struct service);
} lb_services SEC(".maps");

/* The services again, direct-mapped by vip_slot_of(): the data path's
 * service lookup is an inlined array index and a 20-byte compare, where a
 * hash table lookup hashed the key with jhash and walked a bucket (about
 * 40 ns of BenchmarkLbSections' "service lookup" section, on every packet,
 * VIP or not). Written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIP_SLOTS);
	__type(key, __u32);
	__type(value, struct vip_slot);
} lb_vips SEC(".maps");

/* Maglev ring of one service: slots packed RING_LANES to an entry (see
 * RING_LANES in lb.h), each a backend id (0 = none). The loader
 * builds a fresh ring and swaps it into lb_rings, so a packet sees either the
 * old ring or the new one, never a mix. */
struct lb_ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RING_ENTRIES);
	__type(key, __u32);
	__type(value, __u64); /* RING_LANES __u16 slots */
};

/* Service id -> its current Maglev ring. Written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct lb_ring);
} lb_rings SEC(".maps");

/* Backend id -> PE address, next-hop MACs, state. Written by the loader;
 * id 0 is never used. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} lb_backends SEC(".maps");

/* Connection table: flow -> backend. Written by this program (new flows,
 * re-steering), read by the loader for stats and restarts. The loader picks
 * a common or per-CPU LRU list at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONN_ENTRIES);
	__type(key, struct conn_key);
	__type(value, struct conn);
} lb_conns SEC(".maps");

/* Node-wide settings, one entry. Written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} lb_config SEC(".maps");

/* Packets and bytes per service id. Written by this program. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct vip_stats);
} lb_vip_stats SEC(".maps");

/* Packets, bytes and new flows per backend id. Written by this program. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct pe_stats);
} lb_pe_stats SEC(".maps");

/* Connection table hits/misses and drops by reason. Written by this program. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct global_stats);
} lb_stats SEC(".maps");

/* Per-CPU new-flow rate window of the flood guard. Written by this program. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flood_state);
} lb_flood SEC(".maps");

/* Egress interfaces, indexed by backend tx_port: where a PE's packets go
 * when its interface is not the one they arrived on. Written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, TX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} lb_tx_ports SEC(".maps");

/* Source networks allowed to reach the control ports (config.ctrl_ports)
 * through this program's interfaces. Written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ctrl_key);
	__type(value, __u8);
} lb_ctrl_allow SEC(".maps");

/* Section boundaries for BenchmarkLbSections. Only the LbStages build
 * (-DLB_STAGES, a separate object) defines them: it returns at boundary
 * lb_stage (set at load time; 0 runs the whole program), so the cost of
 * each section is the difference of two consecutive boundaries. The
 * balancer itself compiles them out. */
#ifdef LB_STAGES
volatile const __u32 lb_stage = 0;
#define STAGE(n)                                \
	do {                                    \
		if (lb_stage == (n))            \
			return XDP_TX;          \
	} while (0)
#else
#define STAGE(n) do { } while (0)
#endif

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* One murmur3 round; loader.FlowHash mirrors this exactly so Go can predict
 * (and test) the PE a flow gets. */
static __always_inline __u32 mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 flow_hash(const struct flow *f, __u32 seed)
{
	__u32 h = seed;

	h = mix(h, f->src.w[0]);
	h = mix(h, f->dst.w[0]);
	if (f->family == 6) {
		h = mix(h, f->src.w[1]);
		h = mix(h, f->src.w[2]);
		h = mix(h, f->src.w[3]);
		h = mix(h, f->dst.w[1]);
		h = mix(h, f->dst.w[2]);
		h = mix(h, f->dst.w[3]);
	}
	h = mix(h, ((__u32)f->sport << 16) | f->dport);
	h = mix(h, f->proto);
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* The lb_vips slot of a service key: a multiplicative (Fibonacci) hash of
 * its words' xor. loader.vipSlot mirrors it. */
static __always_inline __u32 vip_slot_of(const struct vip_key *k)
{
	__u32 x = k->addr.w[0] ^ k->addr.w[1] ^ k->addr.w[2] ^ k->addr.w[3] ^
		  *(const __u32 *)&k->port;
	return (x * 0x9e3779b1U) >> (32 - VIP_SLOTS_LOG2);
}

/* The service of a packet's key, or NULL: the owner of its lb_vips slot,
 * else, only when the slot is shared, lb_services. */
static __always_inline struct service *service_of(const struct vip_key *k)
{
	__u32 slot = vip_slot_of(k);
	struct vip_slot *v = bpf_map_lookup_elem(&lb_vips, &slot);
	if (!v)
		return NULL;
	const __u64 *a = (const __u64 *)&v->key, *b = (const __u64 *)k;
	if (a[0] == b[0] && a[1] == b[1] &&
	    *(const __u32 *)&v->key.port == *(const __u32 *)&k->port)
		return &v->svc;
	if (!v->spill)
		return NULL;
	return bpf_map_lookup_elem(&lb_services, k);
}

static __always_inline struct global_stats *gstats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&lb_stats, &zero);
}

#define COUNT(field)                                   \
	({                                             \
		struct global_stats *__s = gstats();   \
		if (__s)                               \
			__s->field++;                  \
	})

/* The parsed facts the steering code needs. */
struct pkt {
	struct flow flow;
	__u32 l3_len;  /* bytes from the IP header to the end of the packet */
	__u8 inner_v6; /* the packet to forward is IPv6 */
	__u8 icmp;     /* a too-big error about the flow, not the flow itself */
	__u8 syn;      /* TCP SYN without ACK: a connection attempt */
	/* A first fragment or an IPv6 packet with extension headers: never
	 * steered (passed as before), only checked against the control ports,
	 * so neither is a way around the filter. */
	__u8 ctrl_only;
};

/* Reads the first four bytes of a TCP, UDP or SCTP header: the ports. The
 * minimal header length is checked so a truncated header is caught. */
static __always_inline int l4_ports(void *l4, void *data_end, __u8 proto, struct pkt *pk)
{
	__u32 need;

	switch (proto) {
	case IPPROTO_TCP:
		need = 20;
		break;
	case IPPROTO_UDP:
		need = 8;
		break;
	case IPPROTO_SCTP:
		need = 12;
		break;
	default:
		return -1;
	}
	if (l4 + need > data_end)
		return -2;
	pk->flow.sport = ((__be16 *)l4)[0];
	pk->flow.dport = ((__be16 *)l4)[1];
	/* Byte 13 of the TCP header holds the flags; SYN 0x02, ACK 0x10. */
	if (proto == IPPROTO_TCP)
		pk->syn = (((__u8 *)l4)[13] & 0x12) == 0x02;
	return 0;
}

static __always_inline int is_l4(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

/* Reads the ports of a packet that is only checked against the control
 * ports (see pkt.ctrl_only). Four bytes are all it needs; fewer is a
 * malformed packet. */
static __always_inline int ctrl_ports_only(void *l4, void *data_end, __u32 saddr4, struct pkt *pk)
{
	if (l4 + 4 > data_end)
		return -2;
	if (pk->flow.family == 4)
		pk->flow.src.w[0] = saddr4;
	pk->flow.dport = ((__be16 *)l4)[1];
	pk->ctrl_only = 1;
	return 0;
}

#define NH_HOPOPTS 0
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_DSTOPTS 60

/* Walks up to four IPv6 extension headers to the transport header, for the
 * control filter only. Returns -1 (pass) for what does not end in TCP, UDP
 * or SCTP, or for a non-first fragment. */
static __always_inline int parse_v6_ext(void *p, void *data_end, __u8 nh, struct pkt *pk)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u8 *h = p;
		if (nh == NH_HOPOPTS || nh == NH_ROUTING || nh == NH_DSTOPTS) {
			if ((void *)(h + 2) > data_end)
				return -2;
			nh = h[0];
			p += ((__u32)h[1] + 1) * 8;
		} else if (nh == NH_FRAGMENT) {
			if ((void *)(h + 8) > data_end)
				return -2;
			if (*(__be16 *)(h + 2) & bpf_htons(0xfff8))
				return -1;
			nh = h[0];
			p += 8;
		} else {
			break;
		}
	}
	if (!is_l4(nh))
		return -1;
	return ctrl_ports_only(p, data_end, 0, pk);
}

/* Parses the IPv4 header quoted inside an ICMP error and turns it back into
 * the flow as the client sent it (the quoted packet went from the VIP to the
 * client). Only the first 8 bytes of the quoted L4 header are guaranteed. */
static __always_inline int parse_icmp4_inner(void *p, void *data_end, struct pkt *pk)
{
	struct iphdr *in = p;

	if ((void *)(in + 1) > data_end)
		return -2;
	if (in->version != 4 || in->ihl != 5 || !is_l4(in->protocol))
		return -1;
	__be16 *ports = (void *)(in + 1);
	if ((void *)(ports + 2) > data_end)
		return -2;
	pk->flow.src.w[0] = in->daddr;
	pk->flow.dst.w[0] = in->saddr;
	pk->flow.sport = ports[1];
	pk->flow.dport = ports[0];
	pk->flow.proto = in->protocol;
	return 0;
}

static __always_inline int parse_icmp6_inner(void *p, void *data_end, struct pkt *pk)
{
	struct ipv6hdr *in = p;

	if ((void *)(in + 1) > data_end)
		return -2;
	if (!is_l4(in->nexthdr))
		return -1;
	__be16 *ports = (void *)(in + 1);
	if ((void *)(ports + 2) > data_end)
		return -2;
	__builtin_memcpy(&pk->flow.src, &in->daddr, 16);
	__builtin_memcpy(&pk->flow.dst, &in->saddr, 16);
	pk->flow.sport = ports[1];
	pk->flow.dport = ports[0];
	pk->flow.proto = in->nexthdr;
	return 0;
}

/* Returns 0 when pk holds a flow worth a service lookup, -1 for a packet
 * that is none of our business (pass), -2 for a malformed one (drop). */
static __always_inline int parse_v4(void *data, void *data_end, struct pkt *pk)
{
	struct iphdr *ip = data;

	if ((void *)(ip + 1) > data_end)
		return -2;
	if (ip->version != 4 || ip->ihl < 5)
		return -2;
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (tot < hlen || data + tot > data_end)
		return -2;
	pk->l3_len = tot;
	pk->flow.family = 4;
	void *l4 = data + hlen;
	/* Fragments are not steered; the kernel reassembles them. Only the
	 * first one carries ports, which the control filter must still see. */
	if (ip->frag_off & bpf_htons(0x3fff)) {
		if (ip->frag_off & bpf_htons(0x1fff) || !is_l4(ip->protocol))
			return -1;
		return ctrl_ports_only(l4, data_end, ip->saddr, pk);
	}
	if (ip->protocol == IPPROTO_ICMP) {
		struct icmp_hdr *ic = l4;
		if ((void *)(ic + 1) > data_end)
			return -1;
		if (ic->type != ICMP_DEST_UNREACH || ic->code != ICMP_FRAG_NEEDED)
			return -1;
		pk->icmp = 1;
		if (parse_icmp4_inner(ic + 1, data_end, pk))
			return -1;
		/* The error must be addressed to the VIP its quote came from;
		 * one addressed elsewhere (this host, say) is not ours. */
		return pk->flow.dst.w[0] == ip->daddr ? 0 : -1;
	}
	pk->flow.src.w[0] = ip->saddr;
	pk->flow.dst.w[0] = ip->daddr;
	pk->flow.proto = ip->protocol;
	return l4_ports(l4, data_end, ip->protocol, pk);
}

static __always_inline int parse_v6(void *data, void *data_end, struct pkt *pk)
{
	struct ipv6hdr *ip = data;

	if ((void *)(ip + 1) > data_end)
		return -2;
	if (ip->version != 6)
		return -2;
	__u32 tot = bpf_ntohs(ip->payload_len) + sizeof(*ip);
	if (data + tot > data_end)
		return -2;
	pk->l3_len = tot;
	pk->flow.family = 6;
	pk->inner_v6 = 1;
	void *l4 = ip + 1;
	if (ip->nexthdr == IPPROTO_ICMPV6) {
		struct icmp_hdr *ic = l4;
		if ((void *)(ic + 1) > data_end)
			return -1;
		if (ic->type != ICMPV6_PKT_TOOBIG)
			return -1;
		pk->icmp = 1;
		if (parse_icmp6_inner(ic + 1, data_end, pk))
			return -1;
		__u32 *d = (__u32 *)&ip->daddr;
		return (pk->flow.dst.w[0] == d[0] && pk->flow.dst.w[1] == d[1] &&
			pk->flow.dst.w[2] == d[2] && pk->flow.dst.w[3] == d[3]) ? 0 : -1;
	}
	__builtin_memcpy(&pk->flow.src, &ip->saddr, 16);
	__builtin_memcpy(&pk->flow.dst, &ip->daddr, 16);
	pk->flow.proto = ip->nexthdr;
	/* Packets with extension headers are not steered (passed), but are
	 * walked for the control filter. */
	if (!is_l4(ip->nexthdr))
		return parse_v6_ext(l4, data_end, ip->nexthdr, pk);
	return l4_ports(l4, data_end, ip->nexthdr, pk);
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* Per-flow bits of the outer source: the client's address folded with its
 * port, stable for a flow, so every packet of a flow takes one receive queue
 * on the PE and different flows spread. */
static __always_inline __u32 src_bits(const struct flow *f)
{
	__u32 v = f->src.w[0] ^ f->src.w[1] ^ f->src.w[2] ^ f->src.w[3];
	return v ^ ((__u32)f->sport << 16) ^ f->sport;
}

/* Prepends an outer IPv4 header (IPIP, or protocol 41 for IPv6 inside). */
static __always_inline int encap_v4(struct xdp_md *ctx, const struct backend *be,
				    const struct config *cfg, const struct pkt *pk)
{
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr)))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	if ((void *)(ip + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(pk->l3_len + sizeof(*ip));
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = pk->inner_v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	ip->check = 0;
	ip->saddr = cfg->src_v4 | (src_bits(&pk->flow) & cfg->src_v4_mask);
	ip->daddr = be->addr.w[0];

	__u32 sum = 0;
	__u16 *w = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	ip->check = csum_fold(sum);
	return 0;
}

/* Prepends an outer IPv6 header (IPv6-in-IPv6, or IPv4 inside). */
static __always_inline int encap_v6(struct xdp_md *ctx, const struct backend *be,
				    const struct config *cfg, const struct pkt *pk)
{
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct ipv6hdr)))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip = data + sizeof(*eth);
	if ((void *)(ip + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);

	*(__u32 *)ip = bpf_htonl(0x60000000);
	ip->payload_len = bpf_htons(pk->l3_len);
	ip->nexthdr = pk->inner_v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	ip->hop_limit = 64;
	__u32 v = src_bits(&pk->flow);
	__u32 *sa = (__u32 *)&ip->saddr;
	sa[0] = cfg->src_v6.w[0];
	sa[1] = cfg->src_v6.w[1];
	sa[2] = cfg->src_v6.w[2] | (rotl32(v, 16) & cfg->src_v6_mask.w[2]);
	sa[3] = cfg->src_v6.w[3] | (v & cfg->src_v6_mask.w[3]);
	__builtin_memcpy(&ip->daddr, &be->addr, 16);
	return 0;
}

/* Picks the backend of a flow that has no usable connection entry. */
static __always_inline struct backend *maglev_pick(const struct service *svc,
						   const struct config *cfg,
						   const struct flow *f, __u32 *id)
{
	__u32 key = svc->id;
	void *ring = bpf_map_lookup_elem(&lb_rings, &key);
	if (!ring || !cfg->ring_size)
		return NULL;
	__u32 slot = flow_hash(f, cfg->seed) % cfg->ring_size;
	__u32 entry = slot / RING_LANES;
	__u16 *lanes = bpf_map_lookup_elem(ring, &entry);
	if (!lanes)
		return NULL;
	__u32 bid = lanes[slot % RING_LANES];
	if (!bid)
		return NULL;
	struct backend *be = bpf_map_lookup_elem(&lb_backends, &bid);
	/* The loader swaps the ring before it marks a PE draining or down, so
	 * this only trips on a slot freed concurrently. */
	if (!be || be->state != PE_ACTIVE || be->svc != svc->id)
		return NULL;
	*id = bid;
	return be;
}

/* Consulting the clock cost a flood's packets about 35 ns (a helper call,
 * even for the coarse clock), more than the rest of the guard: so it is
 * read only when it can change the answer, and sparingly while engaged. */
#define FLOOD_CLOCK_EVERY 16

/* Whether the flood guard lets one more new flow into the connection table:
 * at most flood_limit new flows in a window of at least a second. Within the
 * limit no clock is needed. Past it, a window that has lasted a second is
 * restarted; that is checked on the first flow past the limit and then on
 * every FLOOD_CLOCK_EVERY-th, so once a window ends at most that many more
 * new flows are forwarded without an entry (never dropped) before the guard
 * opens again. */
static __always_inline int flood_allows(const struct config *cfg)
{
	if (!cfg->flood_limit)
		return 1;
	__u32 zero = 0;
	struct flood_state *fs = bpf_map_lookup_elem(&lb_flood, &zero);
	if (!fs)
		return 1;
	__u64 n = ++fs->count;
	if (n == 1) /* the very first new flow opens the first window */
		fs->window_start = bpf_ktime_get_coarse_ns();
	if (n <= cfg->flood_limit)
		return 1;
	if ((n - cfg->flood_limit) % FLOOD_CLOCK_EVERY != 1)
		return 0;
	/* The coarse clock (the last tick's time) is exact enough for a
	 * one-second window and reads no clock source. */
	__u64 now = bpf_ktime_get_coarse_ns();
	if (now - fs->window_start > 1000000000ULL) {
		fs->window_start = now;
		fs->count = 1;
		return 1;
	}
	return 0;
}

/* The verdict for a packet that is not for a VIP: dropped (and counted) when
 * it is sent to a control port from a source outside lb_ctrl_allow, so the
 * client side can neither register, resolve nor speak ENRP; passed
 * otherwise. The cost on the pass path is one array lookup and four
 * compares; the trie is consulted only for control ports. */
static __always_inline int ctrl_verdict(const struct pkt *pk)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
	__be16 p = pk->flow.dport;

	if (!cfg || !p ||
	    (p != cfg->ctrl_ports[0] && p != cfg->ctrl_ports[1] &&
	     p != cfg->ctrl_ports[2] && p != cfg->ctrl_ports[3]))
		return XDP_PASS;
	struct ctrl_key k = { .prefixlen = 128 };
	if (pk->flow.family == 4) {
		k.addr.w[2] = bpf_htonl(0xffff);
		k.addr.w[3] = pk->flow.src.w[0];
	} else {
		k.addr = pk->flow.src;
	}
	if (bpf_map_lookup_elem(&lb_ctrl_allow, &k))
		return XDP_PASS;
	COUNT(drop_control);
	return XDP_DROP;
}

SEC("xdp")
int lb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct pkt pk = {};
	int rc;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		rc = parse_v4(eth + 1, data_end, &pk);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		rc = parse_v6(eth + 1, data_end, &pk);
	else
		return XDP_PASS;
	if (rc == -1)
		return XDP_PASS;
	if (rc < 0) {
		COUNT(drop_bad_header);
		return XDP_DROP;
	}
	STAGE(1);
	if (pk.ctrl_only)
		return ctrl_verdict(&pk);

	struct vip_key vk __attribute__((aligned(8))) = {
		.addr = pk.flow.dst,
		.port = pk.flow.dport,
		.proto = pk.flow.proto,
		.family = pk.flow.family,
	};
	struct service *svc = service_of(&vk);
	STAGE(2);
	if (!svc)
		return pk.icmp ? XDP_PASS : ctrl_verdict(&pk);

	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return XDP_PASS;

	struct global_stats *gs = gstats();
	struct backend *be = NULL;
	struct conn *c = NULL;
	struct conn_key ck = {
		.src = pk.flow.src,
		.sport = pk.flow.sport,
		.svc = svc->id,
	};
	__u32 bid = 0;
	int new_flow = 0;
	/* A SYN opens a connection, so it is steered as new even when its
	 * 5-tuple is in the table (as Katran does): a client reusing a port
	 * must not land on a draining PE. It reads the table only after the
	 * flood guard let it in (below), so a flood never pays a lookup. */
	if (!pk.syn) {
		c = bpf_map_lookup_elem(&lb_conns, &ck);
		STAGE(6);
		if (c) {
			bid = c->backend;
			be = bpf_map_lookup_elem(&lb_backends, &bid);
			/* Draining PEs keep their flows; down ones lose them now. */
			if (be && be->svc == svc->id &&
			    (be->state == PE_ACTIVE || be->state == PE_DRAINING)) {
				if (gs)
					gs->conn_hit++;
			} else {
				be = NULL;
				if (gs)
					gs->resteered++;
			}
		} else if (gs) {
			gs->conn_miss++;
		}
	} else if (gs) {
		gs->conn_miss++;
	}
	if (!be) {
		be = maglev_pick(svc, cfg, &pk.flow, &bid);
		if (!be) {
			if (gs)
				gs->drop_no_pe++;
			return XDP_DROP;
		}
		STAGE(5);
		/* ICMP errors steer with the flow's entry but never create one. */
		if (!pk.icmp) {
			new_flow = 1;
			if (!flood_allows(cfg)) {
				if (gs)
					gs->flood_skip++;
			} else {
				__u64 v = ((__u64)svc->id << 32) | bid; /* struct conn */
				if (pk.syn)
					c = bpf_map_lookup_elem(&lb_conns, &ck);
				/* An entry that exists (a repeated SYN, a flow off a
				 * down PE) is rewritten in place with one 8-byte store,
				 * atomic for concurrent readers, and only if it
				 * changes: bpf_map_update_elem would take a fresh LRU
				 * node and the bucket lock for the same result. */
				if (c) {
					if (*(__u64 *)c != v)
						*(__u64 *)c = v;
				} else {
					bpf_map_update_elem(&lb_conns, &ck, &v, BPF_ANY);
				}
			}
		}
	}

	STAGE(3);
	int l2dsr = svc->flags & SVC_F_L2DSR;
	__u32 overhead = l2dsr ? 0 : (be->family == 6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
	if (pk.l3_len + overhead > cfg->mtu) {
		if (gs)
			gs->drop_too_big++;
		return XDP_DROP;
	}

	if (l2dsr) {
		__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	} else {
		rc = be->family == 6 ? encap_v6(ctx, be, cfg, &pk) : encap_v4(ctx, be, cfg, &pk);
		if (rc) {
			if (gs)
				gs->drop_bad_header++;
			return XDP_DROP;
		}
	}
	/* A PE behind another interface than the packet came in on is
	 * reached by redirect: XDP_TX would put the frame on the wrong link,
	 * where nobody takes it. A redirect that has no egress interface is
	 * counted as undeliverable, and, like every drop, not as sent. */
	int act = XDP_TX;
	if (be->ifindex != ctx->ingress_ifindex || (cfg->flags & CFG_F_REDIRECT)) {
		act = bpf_redirect_map(&lb_tx_ports, be->tx_port, XDP_DROP);
		if (act != XDP_REDIRECT) {
			if (gs)
				gs->drop_undeliverable++;
			return XDP_DROP;
		}
	}

	STAGE(4);
	struct vip_stats *vs = bpf_map_lookup_elem(&lb_vip_stats, &svc->id);
	if (vs) {
		vs->packets++;
		vs->bytes += pk.l3_len;
	}
	struct pe_stats *ps = bpf_map_lookup_elem(&lb_pe_stats, &bid);
	if (ps) {
		ps->packets++;
		ps->bytes += pk.l3_len;
		ps->new_flows += new_flow;
	}
	if (pk.icmp && gs)
		gs->icmp_fwd++;
	return act;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
