#!/usr/bin/env bash
# Builds helm and places it in bin/helm (git-ignored). helm is pinned as a
# Go tool in go.mod (`tool helm.sh/helm/v3/cmd/helm`), so it is built from
# the same module graph and with the same flags as skiff's chart tests,
# which link helm's library (CGO_ENABLED=0 -trimpath, the Makefile's
# STATIC): the packages compiled for one serve the other from Go's build
# cache. The binary is kept in
# $SKIFF_CACHE (default ~/.cache/skiff), keyed by the version, so a fresh
# clone on a machine that built it once takes a second.
#
#   hack/helm.sh            # prints the absolute path of bin/helm
#
# The ldflags are those of helm's own Makefile: the version string, and the
# Kubernetes version that `helm lint` and `helm template` assume when no
# cluster is asked (helm defaults to 1.20 without them; the k8s.io modules
# skiff builds helm with are v0.37, so 1.37).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
K8S_MINOR=${K8S_MINOR:-37}
CACHE=${SKIFF_CACHE:-$HOME/.cache/skiff}
OUT=$CACHE/helm/$HELM_VERSION
DEST=bin/helm

log() { echo "helm: $*" >&2; }

if [ ! -x "$OUT/helm" ]; then
	log "building helm $HELM_VERSION (cold: a few minutes; shares its packages with the chart tests)"
	mkdir -p "$OUT"
	CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false" go build -ldflags "-s -w \
		-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR" \
		-o "$OUT/helm.tmp" helm.sh/helm/v3/cmd/helm >&2
	mv "$OUT/helm.tmp" "$OUT/helm"
fi

mkdir -p bin
if ! cmp -s "$OUT/helm" "$DEST" 2>/dev/null; then
	cp "$OUT/helm" "$DEST"
fi
# helm would otherwise create ~/.config/helm and friends just to print its version.
HELM_CACHE_HOME=$OUT/home/cache HELM_CONFIG_HOME=$OUT/home/config HELM_DATA_HOME=$OUT/home/data \
	"$DEST" version --short >&2
echo "$(cd "$(dirname "$DEST")" && pwd)/$(basename "$DEST")"
