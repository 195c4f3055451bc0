package bpf

// Regenerate redirect_bpfel.go and redirect_bpfel.o from redirect.c with
// `make generate` (hack/gen-bpf.sh picks Debian's clang and llvm-strip).
// Only little-endian targets are built: amd64 and arm64 are what skiff runs on.
//
//go:generate go tool bpf2go -target bpfel -cflags "-Wall -Werror -nostdinc -Iinclude" redirect redirect.c
