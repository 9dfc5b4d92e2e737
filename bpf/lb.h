/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * Types shared by the rspxdp load balancer (lb.c) and its Go loader. Every
 * struct here is a map key or value; bpf2go turns each into a Go type of the
 * same layout (LbBackend, LbFlow, ...), so change both sides together by
 * running `make generate`.
 */
#ifndef RSPXDP_LB_H
#define RSPXDP_LB_H

#include <linux/types.h>

/* Address of either family. IPv4 uses w[0] only and leaves w[1..3] zero so
 * that one key type serves both families. Network byte order; the byte view
 * is there so `bpftool map dump` shows addresses as dotted bytes. */
struct addr {
	union {
		__u32 w[4];
		__u8 b[16];
	};
};

/* Key of a virtual service: the VIP, port and IP protocol a client sends to. */
struct vip_key {
	struct addr addr;
	__be16 port;
	__u8 proto;  /* IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP */
	__u8 family; /* 4 or 6 */
};

/* Forward by rewriting the destination MAC only (L2 direct server return)
 * instead of encapsulating. The PE must own the VIP on a loopback. */
#define SVC_F_L2DSR 0x1

struct service {
	__u32 id;    /* index into lb_rings and lb_vip_stats */
	__u32 flags; /* SVC_F_* */
};

/* Slots of lb_vips, the direct-mapped service table (a power of two). */
#define VIP_SLOTS_LOG2 12
#define VIP_SLOTS (1 << VIP_SLOTS_LOG2)

/* One slot of lb_vips: the service of one VIP, port and protocol, found
 * with an array index instead of a hash table lookup. The slot of a key is
 * vip_slot_of() (loader.vipSlot in Go). The service comes first: the
 * loader's write of a new owner reaches the key last, so a reader that sees
 * a whole matching key also sees that key's service. */
struct vip_slot {
	struct service svc;
	struct vip_key key; /* all zero: no owner */
	/* Nonzero: other services share this slot; a key that is not the
	 * owner's is looked up in lb_services. */
	__u32 spill;
};

/* A flow as the client sent it: the connection table key and the input of
 * the Maglev hash. Ports in network byte order. */
struct flow {
	struct addr src;
	struct addr dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

/* Connection table key: a client's flow to one service. The service id
 * stands for the VIP, port and protocol, so the key is 24 bytes instead of
 * the 40 of struct flow: less to hash and compare on every lookup, and 16
 * bytes less kernel memory per entry. */
struct conn_key {
	struct addr src; /* the client */
	__be16 sport;
	__u16 pad;
	__u32 svc; /* service id */
};

/* Connection table value: which backend slot a flow is pinned to. svc guards
 * against a reused slot: an entry is only honoured if the backend still
 * belongs to the flow's service. */
struct conn {
	__u32 backend;
	__u32 svc;
};
/* lb.c writes a conn as one 8-byte store: backend low, svc high. */
_Static_assert(sizeof(struct conn) == 8, "struct conn is written as a __u64");

/* One entry of a Maglev ring (a __u64 in the map, for BTF's sake) holds
 * RING_LANES consecutive slots as __u16 backend ids (0 = none): slot s is
 * lane s % RING_LANES of entry s / RING_LANES. An array map pads every
 * value to 8 bytes, so one __u32 slot per entry took 8: a 65,537-slot ring
 * was 512 KB, the whole L2 of a core here, and a flood's random slot reads
 * missed it. Packed, it is 128 KB. Backend ids are below 65,536
 * (loader.MaxBackendsLimit). */
#define RING_LANES 4

enum pe_state {
	PE_UNUSED = 0,   /* free slot */
	PE_ACTIVE = 1,   /* takes new flows */
	PE_DRAINING = 2, /* keeps its flows, takes no new ones */
	PE_DOWN = 3,     /* its flows move on their next packet */
};

/* A pool element as the data path sees it. dmac is the next hop towards the
 * PE (the PE itself in L2 DSR mode), smac the egress interface. */
struct backend {
	struct addr addr;
	__u8 dmac[6];
	__u8 smac[6];
	__u8 family; /* 4 or 6: outer header of the encapsulation */
	__u8 state;  /* enum pe_state */
	__u16 tx_port; /* lb_tx_ports slot of the egress interface */
	__u32 svc;     /* owning service id */
	__u32 pe_id;   /* the control plane's PE identifier (not used by the data path) */
	__u32 weight;  /* the control plane's weight (not used by the data path) */
	__u32 ifindex; /* egress interface: XDP_TX when it is the ingress one, else redirect */
};

/* Always send with XDP_REDIRECT through lb_tx_ports, even to a PE behind the
 * ingress interface (without it, only PEs behind another interface are
 * redirected; the others go out with XDP_TX). */
#define CFG_F_REDIRECT 0x1

/* Control ports the filter guards (the registrar's ASAP, ENRP and metrics
 * ports); 0 = unused slot. */
#define CTRL_PORTS 4

struct config {
	__u32 seed;        /* Maglev flow hash seed: equal on every node */
	__u32 ring_size;   /* entries of each Maglev ring (prime) */
	__u32 flood_limit; /* new flows per second per CPU before compute-only; 0 = off */
	__u32 mtu;         /* largest IP packet the egress link carries */
	__u32 flags;       /* CFG_F_* */
	__u32 src_v4;      /* outer source of IPIP (its prefix if src_v4_mask) */
	struct addr src_v6; /* outer source of IPv6 encapsulation (or prefix) */
	/* Host bits of the outer source that vary per flow (network order):
	 * a PE's NIC then spreads encapsulated flows over its receive queues
	 * (RSS hashes the outer header). Zero: one fixed source. */
	__u32 src_v4_mask;
	struct addr src_v6_mask;
	/* Destination ports (network order) that a packet arriving on this
	 * program's interfaces may only be sent to from a network in
	 * lb_ctrl_allow: the registrar is not for the client side. */
	__be16 ctrl_ports[CTRL_PORTS];
};

/* Key of lb_ctrl_allow: a source prefix allowed to reach the control ports.
 * IPv4 is stored IPv4-mapped (::ffff:a.b.c.d, prefixlen + 96), so one trie
 * holds both families. */
struct ctrl_key {
	__u32 prefixlen;
	struct addr addr;
};

struct vip_stats {
	__u64 packets;
	__u64 bytes;
};

struct pe_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

struct global_stats {
	__u64 conn_hit;
	__u64 conn_miss;
	__u64 resteered;   /* conn entries moved off a down PE */
	__u64 flood_skip;  /* new flows not inserted by the flood guard */
	__u64 icmp_fwd;    /* ICMP too-big forwarded to a PE */
	__u64 drop_no_pe;
	__u64 drop_bad_header;
	__u64 drop_too_big;
	__u64 drop_control;       /* to a control port from outside lb_ctrl_allow */
	__u64 drop_undeliverable; /* no usable egress interface for the PE */
};

struct flood_state {
	__u64 window_start; /* ns */
	__u64 count;
};

#endif
