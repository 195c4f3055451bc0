#!/usr/bin/env bash
# Builds helm from the Go module proxy and places it in bin/helm
# (git-ignored). The build is cached outside the clone, in $SKIFF_CACHE
# (default ~/.cache/skiff), so a fresh clone on a machine that built it once
# takes a second; a cold build takes a few minutes on 2 cores.
#
#   hack/helm.sh            # prints the absolute path of bin/helm
#
# The ldflags are those of helm's own Makefile: the version string, and the
# Kubernetes version that `helm lint` and `helm template` assume when no
# cluster is asked (helm defaults to 1.20 without them; the k8s.io modules
# helm v3.22.0 is built with are v0.37, so 1.37).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=${HELM_VERSION:-v3.22.0}
K8S_MINOR=${K8S_MINOR:-37}
CACHE=${SKIFF_CACHE:-$HOME/.cache/skiff}
OUT=$CACHE/helm/$HELM_VERSION
DEST=bin/helm

log() { echo "helm: $*" >&2; }

if [ ! -x "$OUT/helm" ]; then
	log "building helm $HELM_VERSION (cold: a few minutes)"
	mkdir -p "$OUT"
	GOBIN=$OUT GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install -trimpath -ldflags "-s -w \
		-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi

mkdir -p bin
if ! cmp -s "$OUT/helm" "$DEST" 2>/dev/null; then
	cp "$OUT/helm" "$DEST"
fi
# helm would otherwise create ~/.config/helm and friends just to print its version.
HELM_CACHE_HOME=$OUT/home/cache HELM_CONFIG_HOME=$OUT/home/config HELM_DATA_HOME=$OUT/home/data \
	"$DEST" version --short >&2
echo "$(cd "$(dirname "$DEST")" && pwd)/$(basename "$DEST")"
