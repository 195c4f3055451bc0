#!/usr/bin/env bash
# Runs the end-to-end scenario (test/e2e, docs/testing.md) from nothing:
# starts the single-node cluster (hack/cluster-up.sh: cached builds, host
# changes recorded), builds skiff's images from this tree and imports them
# (hack/images.sh --import), runs the scenario, and tears the cluster down
# again (hack/cluster-down.sh), whatever the outcome.
#
#   hack/e2e.sh                  # what `make e2e` and, as root, `make test` run
#   SKIFF_E2E_KEEP=1 hack/e2e.sh # leave the cluster and both sites running
#   hack/e2e.sh --prepare        # only start the cluster and import the images
#
# A cluster that is already up (make cluster-up) is used and left up. One
# that --prepare started (hack/test.sh runs it while the unit tests run)
# is used as it is, its images already imported, and torn down at the end.
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

prepare=
case ${1:-} in
--prepare) prepare=1 ;;
"") ;;
*) echo "usage: $0 [--prepare]" >&2; exit 2 ;;
esac
# PREPARED marks a cluster that --prepare started and imported this tree's
# images into, for the run of this script that follows to use and stop. It
# holds the tree's identity: after an edit the images are built again.
PREPARED=$STATE/e2e-prepared
tree_id() { bash hack/tree-id.sh; }

was_up= prepared=
if [ -s "$STATE/admin.kubeconfig" ] && KUBECONFIG=$STATE/admin.kubeconfig kubectl get --raw /readyz >/dev/null 2>&1; then
	if [ -z "$prepare" ] && [ -e "$PREPARED" ]; then
		prepared=1
		log "using the cluster that --prepare started, with its images"
	else
		was_up=1
		log "using the running cluster"
	fi
fi
if [ -n "$prepare" ]; then
	if [ -z "$was_up" ]; then
		log "starting the cluster"
		bash hack/cluster-up.sh
	fi
	if [ -z "$was_up" ] && [ "$(cat bin/images/tree-id 2>/dev/null)" = "$(tree_id)" ]; then
		# hack/images.sh built them from this tree (CI's prebuild), and
		# hack/cluster-up.sh imported bin/images as it started.
		log "skiff's images of this tree were imported by cluster-up"
	else
		log "building and importing skiff's images"
		bash hack/images.sh --import
	fi
	[ -n "$was_up" ] || tree_id >"$PREPARED"
	log "prepared"
	exit 0
fi
down() {
	local rc=$?
	rm -f "$PREPARED"
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

if [ -z "$was_up" ] && [ -z "$prepared" ]; then
	log "starting the cluster"
	bash hack/cluster-up.sh
fi
if [ -n "$prepared" ] && [ "$(cat "$PREPARED")" != "$(tree_id)" ]; then
	log "the tree changed since --prepare imported its images"
	prepared=
fi
if [ -z "$prepared" ]; then
	log "building and importing skiff's images"
	bash hack/images.sh --import
fi
log "running the scenario"
$GO test -tags e2e -count=1 -v -timeout 20m ./test/e2e
