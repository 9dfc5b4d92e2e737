//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * rspxdp PE-side decapsulation: the other half of the load balancer's IPIP
 * and IPv6-in-IPv6 forwarding, for kernels without an ipip/ip6tnl device.
 *
 * A packet whose outer IPv4 or IPv6 header is addressed to one of this PE's
 * addresses (decap_addrs) and carries IPv4 (protocol 4) or IPv6 (next header
 * 41) loses its outer header and goes on to the local stack with XDP_PASS.
 * The inner packet is addressed to the VIP, which the PE has on a loopback,
 * so the stack accepts it and replies straight to the client (direct server
 * return). Everything else passes untouched.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define DECAP_ADDRS 64

/* An address of this PE, either family; IPv4 uses w[0] only. Network byte
 * order. */
struct decap_addr {
	__u32 w[4];
	__u32 family; /* 4 or 6 */
};

/* Per-CPU counters. Packets that are not encapsulated for this PE are
 * counted in pass, so the same program doubles as an ingress packet counter
 * (the pps comparison uses it that way). */
struct decap_stats {
	__u64 decap_v4;    /* outer IPv4 stripped */
	__u64 decap_v6;    /* outer IPv6 stripped */
	__u64 decap_bytes; /* inner bytes (L3) delivered */
	__u64 pass;        /* not encapsulated for this PE: untouched */
	__u64 drop_bad;    /* for this PE but malformed or corrupted */
	__u64 drop_frag;   /* fragmented outer IPv4: cannot be decapsulated */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DECAP_ADDRS);
	__type(key, struct decap_addr);
	__type(value, __u8);
} decap_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct decap_stats);
} decap_counters SEC(".maps");

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* Moves the Ethernet header forward over the outer IP header of hlen bytes
 * and drops what lies before it, giving it the inner packet's ethertype. */
static __always_inline int strip(struct xdp_md *ctx, int hlen, __u16 proto)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr eth;
	if (data + sizeof(eth) > data_end)
		return -1;
	__builtin_memcpy(&eth, data, sizeof(eth));
	if (bpf_xdp_adjust_head(ctx, hlen))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(eth) > data_end)
		return -1;
	eth.h_proto = proto;
	__builtin_memcpy(data, &eth, sizeof(eth));
	return 0;
}

/* csum_ok verifies an IPv4 header checksum. The stack never sees the outer
 * header, so this is the only check that it arrived intact. */
static __always_inline int csum_ok(struct iphdr *ip, void *data_end)
{
	__u16 *w = (__u16 *)ip;
	__u32 words = ip->ihl * 2;
	__u32 sum = 0;
	/* The fixed 20 bytes are known to be in the packet. */
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	/* Options, if any: up to 40 more bytes. */
	for (__u32 i = 10; i < 30; i++) {
		if (i >= words)
			break;
		__u16 *q = w + i;
		/* Keep clang from rewriting the bound as arithmetic on
		 * data_end, which the verifier refuses. */
		asm volatile("" : "+r"(q));
		if ((void *)(q + 1) > data_end)
			return 0;
		sum += *q;
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/* inner_ok checks that the inner header is complete and of the version the
 * outer header announced, so a malformed tunnel packet is not handed to the
 * stack as if it had come from the client. */
static __always_inline int inner_ok(void *inner, void *data_end, __u8 proto)
{
	if (proto == IPPROTO_IPIP) {
		struct iphdr *ip = inner;
		if ((void *)(ip + 1) > data_end)
			return 0;
		return ip->version == 4 && ip->ihl >= 5;
	}
	struct ipv6hdr *ip6 = inner;
	if ((void *)(ip6 + 1) > data_end)
		return 0;
	return ip6->version == 6;
}

SEC("xdp")
int decap_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct decap_stats *st = bpf_map_lookup_elem(&decap_counters, &zero);
	if (!st)
		return XDP_PASS;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		goto pass;

	struct decap_addr key = {};
	void *inner;
	int hlen;
	__u8 proto;
	__u16 l3_len;
	int outer_v6 = 0;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			goto pass;
		proto = ip->protocol;
		if (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6)
			goto pass;
		key.family = 4;
		key.w[0] = ip->daddr;
		if (!bpf_map_lookup_elem(&decap_addrs, &key))
			goto pass;
		if (ip->version != 4 || ip->ihl < 5 || !csum_ok(ip, data_end)) {
			st->drop_bad++;
			return XDP_DROP;
		}
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
			st->drop_frag++;
			return XDP_DROP;
		}
		hlen = ip->ihl * 4;
		l3_len = bpf_ntohs(ip->tot_len);
		if (l3_len < hlen) {
			st->drop_bad++;
			return XDP_DROP;
		}
		l3_len -= hlen;
		inner = (void *)ip + hlen;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			goto pass;
		/* Extension headers are not walked: the load balancer never
		 * adds any, so such packets are not ours. */
		proto = ip6->nexthdr;
		if (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6)
			goto pass;
		key.family = 6;
		__builtin_memcpy(key.w, &ip6->daddr, 16);
		if (!bpf_map_lookup_elem(&decap_addrs, &key))
			goto pass;
		hlen = sizeof(*ip6);
		l3_len = bpf_ntohs(ip6->payload_len);
		inner = ip6 + 1;
		outer_v6 = 1;
	} else {
		goto pass;
	}

	if (!inner_ok(inner, data_end, proto)) {
		st->drop_bad++;
		return XDP_DROP;
	}
	if (strip(ctx, hlen, proto == IPPROTO_IPIP ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6))) {
		st->drop_bad++;
		return XDP_DROP;
	}
	if (outer_v6)
		st->decap_v6++;
	else
		st->decap_v4++;
	st->decap_bytes += l3_len;
	return XDP_PASS;

pass:
	st->pass++;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
