package bpf

// LbCFlags are the clang flags of every lb object; TestLbObjectsUpToDate
// rebuilds with the same go:generate lines, so keep them in one place there.
//
// -mcpu=v3 gives 32-bit jumps and ALU ops (kernel 5.1+); the include path
// finds asm/types.h on Debian without a vmlinux.h.

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type vip_key -type service -type vip_slot -type conn_key -type conn -type backend -type config -type vip_stats -type pe_stats -type global_stats -type flood_state -type ctrl_key Lb lb.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type bench_frame -output-stem lb_bench LbBench lb_bench.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -DLB_STAGES" -target bpfel -go-package bpf -output-stem lb_stages LbStages lb.c
