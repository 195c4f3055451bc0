#!/usr/bin/env bash
# Builds skiff's container images without a registry or a Docker engine:
# static binaries (CGO_ENABLED=0) on an empty base, written by hack/images
# (go-containerregistry, in its own module) as image tarballs
#
#   bin/images/skiff-<component>-<tag>.tar   named skiff.local/skiff-<component>:<tag>
#
# and, with --import, imported into the local containerd's k8s.io namespace
# (the one hack/cluster-up.sh runs; pods use imagePullPolicy: Never).
#
#   hack/images.sh [--tag 0.1.0] [--import] [component...]
#
# Components: router controller injector node-agent echo (default: all). The
# node agent runs as root (it loads eBPF); the others as 65532. A component
# that does not compile is reported and skipped; the exit status is then 1.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-0.1.0}
IMPORT=
CONTAINERD_SOCK=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
want=()
while [ $# -gt 0 ]; do
	case $1 in
	--tag) TAG=$2; shift 2 ;;
	--tag=*) TAG=${1#--tag=}; shift ;;
	--import) IMPORT=1; shift ;;
	-h | --help) sed -n '2,16p' "$0"; exit 0 ;;
	*) want+=("$1"); shift ;;
	esac
done

# component  package                     user
components=(
	"router     ./sidecar/cmd/skiff-router        65532"
	"controller ./xds/cmd/skiff-controller        65532"
	"injector   ./webhook/cmd/skiff-injector      65532"
	"node-agent ./bpf/cmd/skiff-node-agent        0"
	"echo       ./test/cmd/skiff-echo             65532"
)

for w in "${want[@]}"; do
	printf '%s\n' "${components[@]}" | awk '{print $1}' | grep -qx "$w" ||
		{ echo "images: unknown component $w (want: router controller injector node-agent echo)" >&2; exit 2; }
done

OUTDIR=bin/images
mkdir -p "$OUTDIR"
# The tree the images are built from (hack/tree-id.sh), recorded once all
# of them built: hack/e2e.sh --prepare then need not build them again.
tree=$(bash hack/tree-id.sh)
rm -f "$OUTDIR/tree-id"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source_url=https://github.com/skiff-io/skiff
tags=$(tr -d '[:space:]' <hack/go-tags) # the Makefile's GO_TAGS

built=() failed=()
for c in "${components[@]}"; do
	read -r name pkg user <<<"$c"
	if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx "$name"; then
		continue
	fi
	bin=skiff-$name
	ref=skiff.local/skiff-$name:$TAG
	tar=$OUTDIR/skiff-$name-$TAG.tar
	if ! CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -tags="$tags" -ldflags "-s -w" -o "$work/$bin" "$pkg" 2>"$work/$name.err"; then
		echo "images: $bin does not build:" >&2
		sed 's/^/    /' "$work/$name.err" | head -20 >&2
		failed+=("$bin")
		continue
	fi
	if ! (cd hack/images && go run . -o "$OLDPWD/$tar" -name "$ref" -binary "$work/$bin" -user "$user" \
		-title "$bin" -source "$source_url" -version "$TAG"); then
		failed+=("$bin")
		continue
	fi
	echo "images: $ref -> $tar ($(du -h "$tar" | cut -f1))" >&2
	built+=("$tar")
done

if [ -n "$IMPORT" ] && [ ${#built[@]} -gt 0 ]; then
	if ! ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
		echo "images: no containerd at $CONTAINERD_SOCK (start it with hack/cluster-up.sh); not imported" >&2
		exit 1
	fi
	for t in "${built[@]}"; do
		ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$t" >/dev/null
	done
	echo "images: imported ${#built[@]} image(s) into containerd (namespace k8s.io)" >&2
fi

if [ ${#failed[@]} -gt 0 ]; then
	echo "images: FAILED: ${failed[*]}" >&2
	exit 1
fi
if [ ${#want[@]} -eq 0 ]; then
	echo "$tree" >"$OUTDIR/tree-id"
fi
