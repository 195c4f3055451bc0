#!/usr/bin/env bash
# Runs the end-to-end scenario (test/e2e, docs/testing.md) from nothing:
# starts the single-node cluster (hack/cluster-up.sh: cached builds, host
# changes recorded), builds skiff's images from this tree and imports them
# (hack/images.sh --import), runs the scenario, and tears the cluster down
# again (hack/cluster-down.sh), whatever the outcome.
#
#   hack/e2e.sh                  # what `make e2e` and, as root, `make test` run
#   SKIFF_E2E_KEEP=1 hack/e2e.sh # leave the cluster and both sites running
#
# A cluster that is already up (make cluster-up) is used and left up.
# Needs root. Exit status: the scenario's.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "e2e: needs root (a real kubelet, containerd, eBPF)" >&2; exit 1; }
GO=${GO:-go}
STATE=${SKIFF_CLUSTER_STATE:-/var/lib/skiff-cluster}
T0=$(date +%s)
log() { echo "e2e [$(($(date +%s) - T0))s]: $*" >&2; }
# Without Debian's kubectl, cluster-up builds one next to the cluster's
# binaries; the scenario runs `kubectl` from PATH.
K8S_VERSION=${K8S_VERSION:-v1.37.2}
command -v kubectl >/dev/null || export PATH=$PATH:${SKIFF_CACHE:-$HOME/.cache/skiff}/cluster/k8s-$K8S_VERSION

was_up=
if [ -s "$STATE/admin.kubeconfig" ] && KUBECONFIG=$STATE/admin.kubeconfig kubectl get --raw /readyz >/dev/null 2>&1; then
	was_up=1
	log "using the running cluster"
fi
down() {
	local rc=$?
	if [ -n "${SKIFF_E2E_KEEP:-}" ] || [ -n "$was_up" ]; then
		log "leaving the cluster up (hack/cluster-down.sh stops it)"
	else
		log "tearing the cluster down"
		bash hack/cluster-down.sh || rc=1
	fi
	log "done, exit $rc"
	exit $rc
}
trap down EXIT

if [ -z "$was_up" ]; then
	log "starting the cluster"
	bash hack/cluster-up.sh
fi
log "building and importing skiff's images"
bash hack/images.sh --import
log "running the scenario"
$GO test -tags e2e -count=1 -v -timeout 20m ./test/e2e
