#!/usr/bin/env bash
# Splits skiff's test packages in two for `make test`:
#
#   hack/test-packages.sh race    # packages whose test binaries link neither Kubernetes nor helm
#   hack/test-packages.sh static  # the others (controller, injector, node agent, chart)
#
# The first group runs under the race detector. The second runs with the
# static build flags everything else uses (CGO_ENABLED=0, -trimpath: go vet,
# helm, skiff's binaries and images), so that the Kubernetes client,
# controller-runtime and helm compile once on a fresh machine rather than
# three times (race, cgo, static). Their concurrency is controller-runtime's and client-go's; skiff's
# own concurrent code (mux, router, netview, the xDS server, the eBPF
# loader) is in the first group.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in race | static) ;; *) echo "usage: $0 race|static" >&2; exit 2 ;; esac
go list -test -f '{{if not .ForTest}}{{.ImportPath}}{{range .Deps}}{{if or (eq . "k8s.io/apimachinery/pkg/runtime") (eq . "helm.sh/helm/v3/pkg/action")}} heavy{{end}}{{end}}{{end}}' ./... |
	awk -v want="$1" '$1 ~ /\.test$/ { sub(/\.test$/, "", $1); heavy = ($2 == "heavy"); if ((want == "static") == heavy) print $1 }'
