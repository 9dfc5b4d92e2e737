//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Benchmark harness for BPF_PROG_TEST_RUN. With repeat > 1 the kernel runs a
 * program over one packet buffer again and again, so a program that
 * encapsulates would see its own output on the next run. lb_bench first puts
 * the reference frame back (moving the head to the original length and
 * rewriting the bytes), optionally makes the flow new by writing a counter
 * into the source address, then tail-calls the program under test. Measuring
 * it with lb_bench_trivial in the slot gives the harness cost to subtract:
 * the harness does the same work whichever program follows (it always moves
 * the head, by zero bytes after a program that left the frame alone).
 *
 * lb_ref_encap and lb_ref_insert are in-program references, measured in the
 * same run as lb.c: the least any balancer does on a table hit (one
 * connection table lookup and an IPIP header) and on a new flow (one LRU
 * insert), so a figure can be read against the kernel's own floor;
 * lb_ref_lookup is the lookup alone.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb.h"

#define BENCH_MAX 256

/* The frame to restore before each run. Written by the Go benchmark. */
struct bench_frame {
	__u32 len;
	__u32 mutate_off; /* 0: leave the frame alone; else offset of a 4-byte counter */
	__u32 counter;
	__u32 mask; /* nonzero: cycle through mask+1 flows instead of new ones forever */
	__u8 data[BENCH_MAX];
};

/* One entry: the reference frame. Written by the Go benchmark. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_frame);
} lb_bench_frame SEC(".maps");

/* Slot 0: the program under test. Written by the Go benchmark. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lb_bench_jmp SEC(".maps");

SEC("xdp")
int lb_bench(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct bench_frame *fr = bpf_map_lookup_elem(&lb_bench_frame, &zero);
	if (!fr)
		return XDP_ABORTED;
	/* A helper, not data_end - data: clang narrows that pointer difference
	 * to 32-bit arithmetic, which the verifier refuses. */
	long cur = bpf_xdp_get_buff_len(ctx);
	__u32 len = fr->len;
	if (len < 14 || len > BENCH_MAX)
		return XDP_ABORTED;
	int delta = (int)(cur - (long)len);
	/* Unconditional: the baseline pays for the helper as the measured run
	 * does. */
	if (bpf_xdp_adjust_head(ctx, delta))
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, fr->data, len))
		return XDP_ABORTED;
	if (fr->mutate_off) {
		__u32 c = ++fr->counter;
		if (fr->mask)
			c &= fr->mask;
		bpf_xdp_store_bytes(ctx, fr->mutate_off, &c, sizeof(c));
	}
	bpf_tail_call(ctx, &lb_bench_jmp, 0);
	return XDP_ABORTED;
}

/* Stand-in for the program under test when measuring the harness alone. */
SEC("xdp")
int lb_bench_trivial(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* The references' connection table: the Go benchmark sizes it and picks its
 * LRU flavour like lb_conns. Written by lb_ref_insert and the benchmark. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct conn_key);
	__type(value, struct conn);
} lb_ref_conns SEC(".maps");

/* The connection key of the frame's IPv4 flow (service 0), read at fixed
 * offsets (the reference frames have no IP options). */
static __always_inline int ref_flow(struct xdp_md *ctx, struct conn_key *f)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__be16 *ports = (void *)(ip + 1);

	if ((void *)(ports + 2) > data_end)
		return -1;
	f->src.w[0] = ip->saddr;
	f->sport = ports[0];
	return 0;
}

/* The frame's entry in lb_ref_conns, or NULL: the lookup both hit
 * references share, inlined into each. */
static __always_inline struct conn *ref_hit(struct xdp_md *ctx)
{
	struct conn_key f = {};

	if (ref_flow(ctx, &f))
		return NULL;
	return bpf_map_lookup_elem(&lb_ref_conns, &f);
}

/* Bare table lookup + IPIP encapsulation: the floor of a hit. */
SEC("xdp")
int lb_ref_encap(struct xdp_md *ctx)
{
	struct conn *c = ref_hit(ctx);
	if (!c)
		return XDP_ABORTED;
	__u32 tot = bpf_xdp_get_buff_len(ctx) - sizeof(struct ethhdr);
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr)))
		return XDP_ABORTED;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	if ((void *)(ip + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memset(eth, 2, 12);
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(tot + sizeof(*ip));
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_IPIP;
	ip->check = 0;
	ip->saddr = 0x0110ac;
	ip->daddr = c->backend;
	__u32 sum = 0;
	__u16 *w = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum;
	return XDP_TX;
}

/* Bare table lookup: the connection table's share of lb_ref_encap. */
SEC("xdp")
int lb_ref_lookup(struct xdp_md *ctx)
{
	struct conn *c = ref_hit(ctx);
	if (!c)
		return XDP_ABORTED;
	return c->backend ? XDP_TX : XDP_DROP;
}

/* Bare LRU insert of the frame's flow: the floor of a new flow. */
SEC("xdp")
int lb_ref_insert(struct xdp_md *ctx)
{
	struct conn_key f = {};
	struct conn c = { .backend = 1, .svc = 0 };

	if (ref_flow(ctx, &f))
		return XDP_ABORTED;
	bpf_map_update_elem(&lb_ref_conns, &f, &c, BPF_ANY);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
