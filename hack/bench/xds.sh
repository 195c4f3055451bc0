#!/usr/bin/env bash
# xDS control-server scale benchmark: TestScale in ./xds/server (skipped
# unless SKIFF_BENCH=1). One process serves a table of 10,000 services in
# three sites to 1,000 delta ADS clients (10 gRPC connections × 100
# streams) and prints, for the fleet engine skiff uses:
#
#   the initial sync (clients join in batches), the time from Update() to
#   the last client's ACK for 20 single-service changes (p50, p99), CPU
#   time per change, RSS, and a full resync (server restart, same table),
#   and whether the targets are met (change p99 < 1 s, RSS < 1 GiB)
#
# then, unless BASELINE_CLIENTS=0, runs both engines again with
# BASELINE_CLIENTS clients (default 100; go-control-plane's SnapshotCache
# needs minutes per sync at 1,000) and prints the SnapshotCache's figures
# as ratios to the fleet engine's, measured in this same run.
#
# Environment:
#   SKIFF_BENCH_SERVICES, SKIFF_BENCH_CLIENTS, SKIFF_BENCH_CONNS,
#   SKIFF_BENCH_BATCH, SKIFF_BENCH_CHANGES   see xds/server/scale_test.go
#   BASELINE_CLIENTS                         clients of the baseline pair (0: skip)
set -euo pipefail
cd "$(dirname "$0")/../.."
baseline=${BASELINE_CLIENTS:-100}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() { # engine [clients]
	local engine=$1 clients=${2:-${SKIFF_BENCH_CLIENTS:-1000}}
	SKIFF_BENCH=1 SKIFF_BENCH_ENGINE=$engine SKIFF_BENCH_CLIENTS=$clients \
		go test -run '^TestScale$' -count=1 -timeout 60m -v ./xds/server | grep -v '^=== RUN\|^--- PASS\|^PASS\|^ok ' | tee -a "$out"
}

echo "== fleet engine"
run fleet
grep '^RESULT engine=fleet' "$out" | tail -1 | awk '
	{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
	END {
		printf "targets: change p99 %s ms (< 1000: %s), RSS %s MiB (< 1024: %s)\n",
			v["change_p99_ms"], v["change_p99_ms"] < 1000 ? "met" : "MISSED",
			v["rss_mib"], v["rss_mib"] < 1024 ? "met" : "MISSED"
	}'
if [ "$baseline" != 0 ]; then
	echo "== baseline pair with $baseline clients"
	run fleet "$baseline"
	run snapshot "$baseline"
	echo "== go-control-plane SnapshotCache / fleet engine, $baseline clients"
	grep "^RESULT .*clients=$baseline " "$out" | tail -2 | awk '
		{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[NR, kv[1]] = kv[2] } }
		BEGIN { printf "  %-18s %10s %10s  %s\n", "", "fleet", "snapshot", "ratio" }
		END {
			n = split("change_p50_ms change_p99_ms change_cpu_p50_ms rss_mib peak_rss_mib initial_s resync_s", keys, " ")
			for (i = 1; i <= n; i++) {
				k = keys[i]
				if (v[1, k] > 0) printf "  %-18s %10s %10s  x%.1f\n", k, v[1, k], v[2, k], v[2, k] / v[1, k]
			}
		}'
fi
