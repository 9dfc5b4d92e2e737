package bpf

// decap.c is built with the same clang flags as the lb objects (gen_lb.go);
// TestDecapObjectsUpToDate rebuilds it from this line.

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type decap_addr -type decap_stats Decap decap.c
