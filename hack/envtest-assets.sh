#!/usr/bin/env bash
# Builds the envtest assets (kube-apiserver and etcd) from the Go module
# proxy and places them in bin/envtest/ (git-ignored). Builds are cached
# outside the clone, in $SKIFF_CACHE (default ~/.cache/skiff), so a fresh
# clone on a machine that built them once takes seconds; a cold build takes
# about 10 minutes on 2 cores.
#
#   hack/envtest-assets.sh            # prints the directory for KUBEBUILDER_ASSETS
#
# kube-apiserver comes from k8s.io/kubernetes, which can only be built from a
# throwaway module that replaces every staging module (k8s.io/api, ...) with
# its matching v0 version; etcd from a one-line main around etcdmain.Main.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-v1.37.2}   # pairs with controller-runtime v0.25.x (k8s.io/* v0.37.x)
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${SKIFF_CACHE:-$HOME/.cache/skiff}
OUT=$CACHE/envtest/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
DEST=bin/envtest

log() { echo "envtest-assets: $*" >&2; }

if [ ! -x "$OUT/kube-apiserver" ] || [ ! -x "$OUT/etcd" ]; then
	export GOFLAGS=-buildvcs=false CGO_ENABLED=0
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	mkdir -p "$OUT"

	if [ ! -x "$OUT/kube-apiserver" ]; then
		log "building kube-apiserver $K8S_VERSION (cold: ~10 min)"
		mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
		goline=$(grep -m1 '^go ' "$mod")
		minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
		mkdir -p "$work/kas"
		{
			echo "module kas"
			echo "$goline"
			echo "require k8s.io/kubernetes $K8S_VERSION"
			echo "replace ("
			grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$mod" | awk -v v="v0.$minor.${K8S_VERSION##*.}" '{print "\t" $1 " => " $1 " " v}'
			echo ")"
		} >"$work/kas/go.mod"
		printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' >"$work/kas/tools.go"
		(cd "$work/kas" && go mod tidy >/dev/null 2>&1 && go build -trimpath -ldflags "-s -w \
			-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
			-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
			-o "$OUT/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
	fi

	if [ ! -x "$OUT/etcd" ]; then
		log "building etcd $ETCD_VERSION"
		mkdir -p "$work/etcd"
		printf 'module etcdbuild\n\ngo 1.25\n' >"$work/etcd/go.mod"
		printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$work/etcd/main.go"
		(cd "$work/etcd" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1 &&
			go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" .)
	fi
fi

mkdir -p "$DEST"
for b in kube-apiserver etcd; do
	if ! cmp -s "$OUT/$b" "$DEST/$b" 2>/dev/null; then
		cp "$OUT/$b" "$DEST/$b"
	fi
done
"$DEST/kube-apiserver" --version >&2
echo "$(cd "$DEST" && pwd)"
