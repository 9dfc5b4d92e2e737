//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Benchmark harness for BPF_PROG_TEST_RUN. With repeat > 1 the kernel runs a
 * program over one packet buffer again and again, so a program that
 * encapsulates would see its own output on the next run. lb_bench first puts
 * the reference frame back (moving the head to the original length and
 * rewriting the bytes), optionally makes the flow new by writing a counter
 * into the source address, then tail-calls the program under test. Measuring
 * it with lb_bench_trivial in the slot gives the harness cost to subtract.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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
	if (delta && bpf_xdp_adjust_head(ctx, delta))
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

char LICENSE[] SEC("license") = "Dual MIT/GPL";
