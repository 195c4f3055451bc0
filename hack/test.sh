#!/usr/bin/env bash
# What `make test` runs (the Makefile passes GO, TEST_TIMEOUT and STATIC):
# the test packages in two groups (hack/test-packages.sh: skiff's own
# concurrent code under the race detector, the packages that link
# Kubernetes or helm with the static flags), then, as root, the
# end-to-end scenario (hack/e2e.sh; SKIFF_E2E=0 leaves it out, CI=true
# fails rather than skip it).
#
# The scenario's cluster starts, and skiff's images are built and
# imported, in the background while the packages run (hack/e2e.sh
# --prepare, log in .cache/e2e-prepare.log): it is mostly waiting for
# processes to come up, about 50 s that the scenario no longer waits
# for. If the packages fail, that cluster is torn down again.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
TEST_TIMEOUT=${TEST_TIMEOUT:-25m}
: "${STATIC:?set by the Makefile: the static build flags}"
STATE=${SKIFF_CLUSTER_STATE:-/var/lib/skiff-cluster}

if [ "${SKIFF_E2E:-}" = 0 ]; then
	e2e=off
elif [ "$(id -u)" = 0 ]; then
	e2e=on
elif [ "${CI:-}" = true ]; then
	echo "make test: the end-to-end scenario needs root, and CI runs everything" >&2
	exit 1
else
	e2e=skip
fi

bash hack/helm.sh >/dev/null

prep= prep_log=.cache/e2e-prepare.log
cluster_up() { [ -s "$STATE/admin.kubeconfig" ] && KUBECONFIG=$STATE/admin.kubeconfig kubectl get --raw /readyz >/dev/null 2>&1; }
abandon() { # the packages failed: stop the preparation and its cluster
	kill -- -"$prep" 2>/dev/null || true
	wait "$prep" 2>/dev/null || true
	bash hack/cluster-down.sh >>"$prep_log" 2>&1 || echo "make test: hack/cluster-down.sh failed (log: $prep_log)" >&2
}
if [ $e2e = on ] && ! cluster_up; then
	mkdir -p .cache
	echo "make test: starting the end-to-end cluster in the background (log: $prep_log)"
	# A process group of its own (setsid), so that abandon stops all of it.
	setsid bash hack/e2e.sh --prepare >"$prep_log" 2>&1 &
	prep=$!
	trap abandon EXIT
fi

assets=$(bash hack/envtest-assets.sh)
export KUBEBUILDER_ASSETS=$assets
# shellcheck disable=SC2046 # one word per package
"$GO" test -race -count=1 -timeout "$TEST_TIMEOUT" $(bash hack/test-packages.sh race)
# STATIC is a list of assignments, some quoted: eval reads it as make did.
eval "$STATIC \"\$GO\" test -count=1 -timeout \"\$TEST_TIMEOUT\" $(bash hack/test-packages.sh static | tr "\n" " ")"

case $e2e in
off) echo "make test: SKIFF_E2E=0: end-to-end scenario skipped" ;;
skip) echo "make test: SKIPPED the end-to-end scenario (needs root: a real kubelet, containerd, eBPF)" ;;
on)
	if [ -n "$prep" ]; then
		if ! wait "$prep"; then
			tail -n 40 "$prep_log"
			echo "make test: preparing the end-to-end cluster failed (log: $prep_log)" >&2
			exit 1 # abandon tears it down
		fi
		trap - EXIT
		grep -E '^(cluster-up|images|e2e)' "$prep_log" || true
	fi
	bash hack/e2e.sh
	;;
esac
