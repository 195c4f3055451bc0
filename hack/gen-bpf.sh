#!/usr/bin/env bash
# Regenerates bpf/redirect_bpfel.{go,o} from bpf/redirect.c with bpf2go
# (pinned in go.mod's tool block) and Debian 12's clang 14 and llvm-strip.
# The headers the C needs are vendored in bpf/include, so clang is all it
# takes: apt-get install clang llvm.
#
#   hack/gen-bpf.sh           regenerate
#   hack/gen-bpf.sh --verify  regenerate, compare with the files as they
#                             were, put those back, and fail on any difference
set -euo pipefail
cd "$(dirname "$0")/.."

pick() {
	for c in "$@"; do
		if command -v "$c" >/dev/null 2>&1; then
			command -v "$c"
			return
		fi
	done
	echo "none of $* on PATH; apt-get install clang llvm (Debian 12: clang 14)" >&2
	exit 1
}
export BPF2GO_CC="${BPF2GO_CC:-$(pick clang-14 clang)}"
export BPF2GO_STRIP="${BPF2GO_STRIP:-$(pick llvm-strip-14 llvm-strip)}"
version=$("$BPF2GO_CC" --version | head -1)
case "$version" in
*"version 14."*) ;;
*) echo "warning: $version is not clang 14; the committed objects come from Debian 12's clang 14 and will differ" >&2 ;;
esac

if [ "${1:-}" != "--verify" ]; then
	(cd bpf && go generate ./gen.go)
	echo "regenerated bpf/redirect_bpfel.go and bpf/redirect_bpfel.o with $version"
	exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
files=(redirect_bpfel.go redirect_bpfel.o)
for f in "${files[@]}"; do cp "bpf/$f" "$scratch/$f"; done
(cd bpf && go generate ./gen.go)
status=0
for f in "${files[@]}"; do
	if ! cmp -s "bpf/$f" "$scratch/$f"; then
		echo "bpf/$f differs from what bpf/redirect.c generates: run make generate and commit the result" >&2
		status=1
	fi
	cp "$scratch/$f" "bpf/$f" # leave the tree as it was
done
if [ $status -eq 0 ]; then
	echo "bpf/redirect_bpfel.go and bpf/redirect_bpfel.o match bpf/redirect.c ($version)"
fi
exit $status
