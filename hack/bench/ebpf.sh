#!/usr/bin/env bash
# eBPF redirection against iptables REDIRECT and a direct connection,
# measured in one run on one pod (network namespace + cgroup, the real
# skiff-router sidecar as UID 1337, a server in the root netns that writes
# one byte per connection). Runs BenchmarkConnect in ./bpf (root; needs
# iptables, curl, nsenter, setpriv) and prints, for each path:
#
#   connect + first byte latency (p50, p99; connections one after another)
#   new connections per second (8 concurrent workers)
#   ratios against direct, and eBPF against iptables
#   the kernel's run time of the eBPF hooks per connection (BPF stats)
#
# Environment:
#   BENCH_CONNS   connections per measurement (default 3000)
#   BENCH_ROUNDS  runs of the whole set (default 3); the median is used
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "hack/bench/ebpf.sh needs root (network namespaces, cgroups, eBPF)" >&2
	exit 1
fi
conns=${BENCH_CONNS:-3000}
rounds=${BENCH_ROUNDS:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "== go test -bench BenchmarkConnect -benchtime ${conns}x -count $rounds ./bpf/"
go test -run '^$' -bench '^BenchmarkConnect$' -benchtime "${conns}x" -count "$rounds" ./bpf/ | tee "$out"
grep -q '^BenchmarkConnect/ebpf' "$out" || {
	echo "no eBPF result: see the output above" >&2
	exit 1
}

# One line per (path, metric): the median over rounds.
awk '
/^BenchmarkConnect\// {
	split($1, a, "/"); path = a[2]; sub(/-[0-9]+$/, "", path)
	for (i = 3; i < NF; i += 2) { v[path, $(i+1)] = v[path, $(i+1)] " " $i; seen[$(i+1)] = 1 }
}
function median(s,   n, x, i, j, t) {
	n = split(s, x, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
	return n ? (n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2) : 0
}
END {
	for (k in v) m[k] = median(v[k])
	printf "\n## connect + first byte (%s connections per measurement, median of rounds)\n\n", conns
	printf "| path | p50 µs | p99 µs | conn/s | p50 vs direct | conn/s vs direct |\n|---|---|---|---|---|---|\n"
	split("direct iptables ebpf", paths, " ")
	for (i = 1; i <= 3; i++) {
		p = paths[i]
		printf "| %s | %.1f | %.1f | %.0f | %.2fx | %.2fx |\n", p, m[p, "p50-µs"], m[p, "p99-µs"], m[p, "conn/s"], m[p, "p50-µs"] / m["direct", "p50-µs"], m[p, "conn/s"] / m["direct", "conn/s"]
	}
	printf "\neBPF / iptables: p50 %.2fx, p99 %.2fx (below 1: eBPF answers sooner), conn/s %.2fx (above 1: eBPF sets up more)\n", m["ebpf", "p50-µs"] / m["iptables", "p50-µs"], m["ebpf", "p99-µs"] / m["iptables", "p99-µs"], m["ebpf", "conn/s"] / m["iptables", "conn/s"]
	printf "\n## eBPF hooks per app connection (kernel run time, BPF_ENABLE_STATS)\n\n| program | runs/conn | ns/run |\n|---|---|---|\n"
	split("connect4 connect6 sockops getsockopt", progs, " ")
	for (i = 1; i <= 4; i++) printf "| %s | %.1f | %.0f |\n", progs[i], m["ebpf", progs[i] "-runs/conn"], m["ebpf", progs[i] "-ns/run"]
	printf "\ntotal: %.0f ns per app connection (its own hooks and its sidecar dial), %.1f%% of the eBPF p50\n", m["ebpf", "hooks-ns/conn"], 100 * m["ebpf", "hooks-ns/conn"] / (1000 * m["ebpf", "p50-µs"])
}' conns="$conns" "$out"
