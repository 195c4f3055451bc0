#!/usr/bin/env bash
# make bench-http (and make bench, after router.sh): skiff's per-request
# HTTP routing (package sidecar/l7) against direct loopback, against haproxy
# in mode http, and against skiff's own TCP (per connection) data path,
# measured in one run on this machine. Needs bin/ (make build) and the
# Debian tools haproxy, wrk, h2load (nghttp2-client), curl, openssl
# (hack/install-deps.sh installs them).
#
# Four paths, all on 127.0.0.1, to one skiff-echo (HTTP/1.1, GET / answers
# its name):
#   direct      client -> skiff-echo
#   haproxy     client -> haproxy A (mode http) -mTLS 1.3, ECDSA P-256,
#               kept-alive and reused-> haproxy B (mode http) -> skiff-echo.
#               For HTTP/1.1 clients A -> B is HTTP/1.1; for h2load A binds
#               with "proto h2" (cleartext HTTP/2, prior knowledge) and
#               speaks HTTP/2 to B ("alpn h2"); B -> skiff-echo is HTTP/1.1.
#   skiff-http  client -> east gateway listener (protocol: http) -mTLS
#               link, one HTTP/2 connection per address and site-> west
#               gateway connector (protocol: http) -> skiff-echo
#   skiff-tcp   the same gateways, another address without a protocol:
#               routed per connection, bytes carried as they come
# Workloads: wrk GET / with 1 and 64 keep-alive connections (HTTP/1.1, every
# path), and h2load with 16 connections x 10 streams (cleartext HTTP/2 with
# prior knowledge: haproxy and skiff-http only, skiff-echo speaks HTTP/1.1
# and skiff-tcp would only pass the client's HTTP/2 through to it).
# While each load runs, the CPU time of each proxy process is read from
# /proc and, for the skiff gateways, the bytes allocated from their /metrics
# (go_memstats_alloc_bytes_total), both divided by the requests served.
# One pair of proxies serves every path and workload, one listener each.
# The workloads run in BENCH_ROUNDS rounds, each round every workload on
# every path, so that the paths alternate in one sitting: the tables give
# each figure's median over the rounds (CPU, allocations and busy cores
# over all of them), and the ratios the targets are judged on are also
# printed round by round. On a host that shares its cores, one run of a
# path can catch the host slow; the median of alternating rounds does not
# hang on one moment.
# Prints Markdown tables for docs/benchmarks.md; exits 1 if a run failed
# (a load tool failed, wrk counted socket errors or non-2xx/3xx answers,
# h2load failed requests or answers other than 2xx).
#
# Environment:
#   BENCH_TIME    seconds per run (default 5)
#   BENCH_ROUNDS  rounds of every workload on every path (default 3)
#   BENCH_KEEP    if set, keep the work directory (logs, raw outputs)
#   BENCH_MAX_PROCS  the gateways' --max-procs (default 0: Go's default,
#                 one per core)
#   BENCH_HALT_POLL_NS  if set (root), write it to the guest's
#                 /sys/module/haltpoll/parameters/guest_halt_poll_ns for the
#                 run and restore the old value at the end (see router.sh
#                 and docs/benchmarks.md, "Idle vCPUs"). The value in force
#                 is printed with the results either way.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$PWD/bin
BENCH_NAME=skiff-bench-http
# shellcheck disable=SC2034 # read by lib.sh
BENCH_TOOLS=(haproxy wrk h2load openssl curl ss timeout)
# shellcheck disable=SC2034
BENCH_BINS=(skiff-router skiff-echo)
# shellcheck disable=SC2034
BENCH_MAKE=bench-http
# shellcheck source=hack/bench/lib.sh
source "$PWD/hack/bench/lib.sh"

answers_h1() { # port: skiff-echo's name came back over HTTP/1.1
	[ "$("$BIN/skiff-echo" get --url "http://127.0.0.1:$1/" --count 1 --timeout 1s 2>/dev/null | tr -d ' ')" = bench=1 ]
}
answers_h2() { # port: skiff-echo's name came back over cleartext HTTP/2 (prior knowledge)
	[ "$(curl -s --max-time 2 --http2-prior-knowledge -w '%{http_version}' "http://127.0.0.1:$1/" 2>/dev/null | tr -d '\n')" = bench2 ]
}
wait_path() { # name h1-port [h2-port]: until the path answers end to end
	for _ in $(seq 1 150); do
		if answers_h1 "$2" && { [ -z "${3:-}" ] || answers_h2 "$3"; }; then
			return 0
		fi
		sleep 0.1
	done
	die "$1 path does not answer end to end"
}
metric() { # port name: a gateway's metric, from its /metrics ("" if it cannot be read)
	curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v n="$2" '$1 == n {print $2; exit}' || true
}

m0=$(machine_ticks); sleep 1; idle_busy=$(awk -v a="$m0" -v b="$(machine_ticks)" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}')
if awk -v b="$idle_busy" 'BEGIN {exit !(b > 0.25)}'; then
	echo "bench: warning: the machine was $idle_busy cores busy before the bench started; figures will be low and noisy" >&2
fi

# --- server --------------------------------------------------------------------
SRV=$(free_port)
log "server: skiff-echo :$SRV"
"$BIN/skiff-echo" serve --listen "127.0.0.1:$SRV" --name bench 2>skiff-echo.log & PIDS+=($!)
wait_listen "$SRV"

# --- haproxy A -> mTLS -> haproxy B, mode http -----------------------------------
# A and B each have one listener for HTTP/1.1 clients (h1) and one for
# cleartext HTTP/2 ones (h2); A reaches B over TLS 1.3 with client
# certificates, keeping its connections to B alive and sharing them
# between client connections (http-reuse always); the h2 pair speaks
# HTTP/2 over it, many streams on one connection, as skiff's link does.
declare -A HA HB
for v in h1 h2; do HA[$v]=$(free_port); HB[$v]=$(free_port); done
log "certificates (openssl: ECDSA P-256 CA, server and client) and haproxy A -> mTLS 1.3 -> haproxy B, mode http"
certificates

haproxy_cfg() { # A|B
	cat <<CFG
global
	maxconn 4000
	ssl-default-bind-options ssl-min-ver TLSv1.3
	ssl-default-server-options ssl-min-ver TLSv1.3
defaults
	mode http
	maxconn 4000
	option http-keep-alive
	http-reuse always
	timeout connect 5s
	timeout client 2m
	timeout server 2m
	timeout http-keep-alive 2m
	timeout http-request 1m
CFG
	if [ "$1" = A ]; then
		printf 'listen h1\n\tbind 127.0.0.1:%s\n\tserver b 127.0.0.1:%s ssl crt client.pem ca-file ca.pem verify required\n' \
			"${HA[h1]}" "${HB[h1]}"
		printf 'listen h2\n\tbind 127.0.0.1:%s proto h2\n\tserver b 127.0.0.1:%s ssl crt client.pem ca-file ca.pem verify required alpn h2\n' \
			"${HA[h2]}" "${HB[h2]}"
	else
		printf 'listen h1\n\tbind 127.0.0.1:%s ssl crt server.pem ca-file ca.pem verify required\n\tserver s 127.0.0.1:%s\n' \
			"${HB[h1]}" "$SRV"
		printf 'listen h2\n\tbind 127.0.0.1:%s ssl crt server.pem ca-file ca.pem verify required alpn h2\n\tserver s 127.0.0.1:%s\n' \
			"${HB[h2]}" "$SRV"
	fi
}
haproxy_cfg A >haproxy-a.cfg
haproxy_cfg B >haproxy-b.cfg
for x in a b; do haproxy -c -q -f "haproxy-$x.cfg" || die "haproxy-$x.cfg does not validate"; done
haproxy -db -f haproxy-b.cfg >haproxy-b.log 2>&1 & HB_PID=$!; PIDS+=($!)
haproxy -db -f haproxy-a.cfg >haproxy-a.log 2>&1 & HA_PID=$!; PIDS+=($!)

# --- skiff: east gateway -> link -> west gateway ------------------------------
# Two addresses to the same skiff-echo: web (protocol http, per request)
# and web-tcp (no protocol: per connection). East's listener of web serves
# HTTP/1.1 and cleartext HTTP/2 on one port.
SKH=$(free_port) SKT=$(free_port) LINK=$(free_port)
log "skiff: east (listeners) <- mTLS link dialled by west (connectors); web: protocol http, web-tcp: none"
printf 'name: east\ndataDir: east-data\nlinkAccess:\n  bind: 127.0.0.1:%s\nlisteners:\n  - {address: web, host: 127.0.0.1, port: %s, protocol: http}\n  - {address: web-tcp, host: 127.0.0.1, port: %s}\n' \
	"$LINK" "$SKH" "$SKT" >east.yaml
"$BIN/skiff-router" token issue --site-file east.yaml --out west-token.yaml --expires 15m >/dev/null
printf 'name: west\ndataDir: west-data\nlinks:\n  - {token: west-token.yaml, cost: 1}\nconnectors:\n  - {address: web, host: 127.0.0.1, port: %s, protocol: http}\n  - {address: web-tcp, host: 127.0.0.1, port: %s}\n' \
	"$SRV" "$SRV" >west.yaml
start_gateways
wait_path haproxy "${HA[h1]}" "${HA[h2]}"
wait_path skiff-http "$SKH" "$SKH"
wait_path skiff-tcp "$SKT"
# The skiff-http path must be the per-request one: east's HTTP engine
# counted the requests above (the other paths' would not be there).
http_reqs() { curl -s --max-time 2 "http://127.0.0.1:${MPORT[east]}/metrics" 2>/dev/null |
	awk '$1 ~ /^skiff_http_requests_total\{/ && $1 ~ /address="web"/ {n += $2} END {printf "%d", n}' || true; }
[ "$(http_reqs)" -gt 0 ] || die "east served the skiff-http path's requests without its HTTP engine (skiff_http_requests_total{address=\"web\"} is 0)"
# What one /metrics scrape allocates: the least growth between consecutive
# scrapes of each idle gateway (the least, as an idle gateway allocates
# for its own work now and then). Each run's figure includes one scrape,
# which is taken off.
declare -A SCRAPE # metrics port -> bytes
for s in east west; do
	samples=()
	for _ in 1 2 3 4 5 6; do samples+=("$(metric "${MPORT[$s]}" go_memstats_alloc_bytes_total)"); done
	[ -n "${samples[0]}" ] || echo "bench: warning: $s's /metrics have no go_memstats_alloc_bytes_total; allocations are not reported" >&2
	SCRAPE[${MPORT[$s]}]=$(printf '%s\n' "${samples[@]}" |
		awk 'NR > 1 && p != "" && $1 != "" && (m == "" || $1 - p < m) {m = $1 - p} {p = $1} END {printf "%.0f", m + 0}')
done

PATHS=(direct haproxy skiff-http skiff-tcp)
declare -A PORT=( # PORT[path,h1|h2]; no h2 port: the path is not measured with h2load
	[direct,h1]=$SRV
	[haproxy,h1]=${HA[h1]} [haproxy,h2]=${HA[h2]}
	[skiff-http,h1]=$SKH [skiff-http,h2]=$SKH
	[skiff-tcp,h1]=$SKT
)
declare -A PROCS=([haproxy]="$HA_PID $HB_PID" [skiff-http]="$EAST_PID $WEST_PID" [skiff-tcp]="$EAST_PID $WEST_PID")
declare -A MPORTS=([skiff-http]="${MPORT[east]} ${MPORT[west]}" [skiff-tcp]="${MPORT[east]} ${MPORT[west]}")

# --- measuring ------------------------------------------------------------------
# ROUND[metric,path,round] = a round's figure, RES[metric,path] = the median
# over the rounds; over all rounds: CPU[run,path] = CPU seconds of each proxy
# process, "A B"; ALLOC[run,path] = bytes allocated by each gateway, "east
# west"; REQS[run,path] = requests served; BUSY[run,path] = machine cores
# busy, summed over the rounds.
ROUNDS=${BENCH_ROUNDS:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a whole number of rounds, got $ROUNDS"
declare -A ROUND RES CPU ALLOC REQS BUSY
# add_to ARRAY KEY "x y ...": adds the numbers to ARRAY[KEY]'s, one by one
# ("-", a figure that could not be read, stays "-").
add_to() {
	local -n arr=$1
	arr[$2]=$(awk -v a="${arr[$2]:-}" -v b="$3" 'BEGIN {n = split(b, y, " "); split(a, x, " ")
		for (i = 1; i <= n; i++) {v = (a == "") ? y[i] : (x[i] == "-" || y[i] == "-") ? "-" : x[i] + y[i]; s = s (i > 1 ? " " : "") v}
		print s}')
}
# median X...: the median of the numbers given ("" if none; the mean of the
# middle two for an even count).
median() {
	printf '%s\n' "$@" | awk '$1 != "" {v[++n] = $1} END {if (n == 0) exit
		for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) {t = v[j]; v[j] = v[j - 1]; v[j - 1] = t}
		if (n % 2) print v[(n + 1) / 2]; else printf "%.6g", (v[n / 2] + v[n / 2 + 1]) / 2}'
}
FAILED=()
fail() { # key path file message
	echo "bench: $1 via $2 failed: $4" >&2
	tail -n 8 "$3" >&2
	FAILED+=("$1 via $2")
}

# run KEY PATH OUT CMD...: runs a load, records the proxies' CPU and the
# gateways' allocations meanwhile.
run() {
	local key=$1 path=$2 out=$3; shift 3
	local pids=${PROCS[$path]:-} mports=${MPORTS[$path]:-} p t0 t1 m0 before=() abefore=() secs=() bytes=() a i
	for p in $mports; do abefore+=("$(metric "$p" go_memstats_alloc_bytes_total)"); done
	for p in $pids; do before+=("$(cpu_ticks "$p")"); done
	m0=$(machine_ticks)
	t0=$(now_us)
	if ! "$@" >"$out" 2>&1; then
		fail "$key" "$path" "$out" "$*"
		return 1
	fi
	t1=$(now_us)
	add_to BUSY "$key,$path" "$(awk -v a="$m0" -v b="$(machine_ticks)" -v hz="$HZ" -v us=$((t1 - t0)) \
		'BEGIN {printf "%.4f", (b - a) / hz / (us / 1e6)}')"
	i=0
	for p in $pids; do
		secs+=("$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "$p")" -v hz="$HZ" 'BEGIN {printf "%.4f", (b - a) / hz}')")
		i=$((i + 1))
	done
	[ -n "$pids" ] && add_to CPU "$key,$path" "${secs[*]}"
	i=0
	for p in $mports; do
		a=$(metric "$p" go_memstats_alloc_bytes_total)
		bytes+=("$(awk -v a="${abefore[$i]}" -v b="$a" -v s="${SCRAPE[$p]:-0}" 'BEGIN {if (a == "" || b == "") print "-"; else printf "%.0f", b - a - s}')")
		i=$((i + 1))
	done
	[ -n "$mports" ] && add_to ALLOC "$key,$path" "${bytes[*]}"
	sleep 1 # let the proxies' buffers and idle connections settle between runs
	return 0
}

h2load_rps() { awk '$1 == "finished" && $2 == "in" {sub(/,$/, "", $4); printf "%.0f", $4; exit}' "$1"; }
h2load_field() { # file word: the count before word on the "requests:" line (total, done, succeeded, failed, ...)
	awk -v w="$2" '$1 == "requests:" {for (i = 2; i < NF; i++) {x = $(i + 1); sub(/,$/, "", x); if (x == w) {print $i; exit}}}' "$1"
}
h2load_errors() { # file: what went wrong, or nothing
	awk '$1 == "requests:" {gsub(/,/, ""); if ($10 + $12 + $14 > 0 || $8 == 0) print}
		$1 == "status" && $2 == "codes:" {gsub(/,/, ""); if ($5 + $7 + $9 > 0) print}' "$1"
}
log_ms() { # h2load --log-file percentile: latency in ms (nearest rank)
	cut -f3 "$1" | sort -n | awk -v p="$2" '{v[NR] = $1} END {if (NR == 0) exit; i = int((p * NR + 99) / 100); if (i < 1) i = 1; printf "%.3f", v[i] / 1000}'
}

measure_wrk() { # connections round
	local c=$1 r=$2 path out url
	for path in "${PATHS[@]}"; do
		out=wrk$c-$path-r$r.txt
		url=http://127.0.0.1:${PORT[$path,h1]}/
		if run "wrk$c" "$path" "$out" timeout --foreground -k 5 $((T + 30)) wrk -t$((c > 1 ? 2 : 1)) -c"$c" -d"${T}s" --latency "$url"; then
			ROUND[wrk$c,$path,$r]=$(wrk_rps "$out")
			ROUND[p50x$c,$path,$r]=$(wrk_ms "$out" 50)
			ROUND[p99x$c,$path,$r]=$(wrk_ms "$out" 99)
			add_to REQS "wrk$c,$path" "$(wrk_reqs "$out")"
			e=$(wrk_errors "$out")
			[ -z "$e" ] || fail "wrk$c" "$path" "$out" "$(tr '\n' ' ' <<<"$e")"
		fi
	done
}
measure_h2load() { # round
	local r=$1 path out
	for path in "${PATHS[@]}"; do
		[ -n "${PORT[$path,h2]:-}" ] || continue
		out=h2load-$path-r$r.txt
		if run h2 "$path" "$out" timeout --foreground -k 5 $((T + 30)) h2load -c 16 -m 10 -D "$T" -N 10 \
			--log-file="h2load-$path-r$r.log" "http://127.0.0.1:${PORT[$path,h2]}/"; then
			ROUND[h2,$path,$r]=$(h2load_rps "$out")
			ROUND[p50h2,$path,$r]=$(log_ms "h2load-$path-r$r.log" 50)
			ROUND[p99h2,$path,$r]=$(log_ms "h2load-$path-r$r.log" 99)
			add_to REQS "h2,$path" "$(h2load_field "$out" "done")"
			e=$(h2load_errors "$out")
			[ -z "$e" ] || fail h2 "$path" "$out" "$(tr '\n' ' ' <<<"$e")"
		fi
	done
}
for ((r = 1; r <= ROUNDS; r++)); do
	log "round $r of $ROUNDS: wrk GET / (HTTP/1.1, keep-alive) with 1, then 64 connections, then h2load GET / (cleartext HTTP/2, prior knowledge) with 16 connections x 10 streams on haproxy and skiff-http; ${T}s each"
	measure_wrk 1 "$r"
	measure_wrk 64 "$r"
	measure_h2load "$r"
done
for k in "${!ROUND[@]}"; do
	k=${k%,*}
	[ -n "${RES[$k]:-}" ] && continue
	vals=()
	for ((r = 1; r <= ROUNDS; r++)); do vals+=("${ROUND[$k,$r]:-}"); done
	RES[$k]=$(median "${vals[@]}")
done
# per_round METRIC PATH BASE: METRIC's ratio PATH/BASE in each round
per_round() {
	local r out=""
	for ((r = 1; r <= ROUNDS; r++)); do out+="${out:+, }$(ratio "${ROUND[$1,$2,$r]:-}" "${ROUND[$1,$3,$r]:-}")"; done
	echo "$out"
}

# --- report -------------------------------------------------------------------------
row() { # metric label unit [h2]: one line of the throughput table
	local cells="" path v
	for path in "${PATHS[@]}"; do
		v=${RES[$1,$path]:-ERR}
		[ "${4:-}" = h2 ] && [ -z "${PORT[$path,h2]:-}" ] && v="n/a"
		cells+=" $v |"
	done
	printf '| %s | %s |%s %s | %s |\n' "$2" "$3" "$cells" \
		"$(ratio "${RES[$1,skiff-http]:-}" "${RES[$1,haproxy]:-}")" "$(ratio "${RES[$1,skiff-http]:-}" "${RES[$1,skiff-tcp]:-}")"
}
per_k() { # "x y" requests: each of x and y per 1,000 requests, and their sum: "x + y = sum" (3 places), or ERR
	awk -v v="${1:-}" -v n="${2:-}" 'BEGIN {k = split(v, a, " "); if (k != 2 || n + 0 == 0 || a[1] == "-" || a[2] == "-") {print "ERR"; exit}
		printf "%.3f + %.3f = %.3f", a[1] * 1000 / n, a[2] * 1000 / n, (a[1] + a[2]) * 1000 / n}'
}
per_req() { # "x y" requests: each of x and y per request, and their sum: "x + y = sum" (whole), or ERR
	awk -v v="${1:-}" -v n="${2:-}" 'BEGIN {k = split(v, a, " "); if (k != 2 || n + 0 == 0 || a[1] == "-" || a[2] == "-") {print "ERR"; exit}
		printf "%.0f + %.0f = %.0f", a[1] / n, a[2] / n, (a[1] + a[2]) / n}'
}
sum_of() { awk -v c="$1" 'BEGIN {n = split(c, a, " "); print (n == 5 && a[5] != "ERR") ? a[5] : ""}'; } # "x + y = sum" -> sum

echo
echo "### HTTP per request: throughput and latency ($(date -u +%Y-%m-%d), medians of $ROUNDS alternating rounds, BENCH_TIME=${T}s, $(nproc) CPUs, $idle_busy cores busy just before, $(idle_setup))"
echo
echo "| workload | unit | direct | haproxy | skiff-http | skiff-tcp | skiff-http/haproxy | skiff-http/skiff-tcp |"
echo "|---|---|--:|--:|--:|--:|--:|--:|"
row wrk1 "wrk GET, 1 connection" req/s
row p50x1 "... p50 latency" ms
row p99x1 "... p99 latency" ms
row wrk64 "wrk GET, 64 connections" req/s
row p50x64 "... p50 latency" ms
row p99x64 "... p99 latency" ms
row h2 "h2load, 16 connections x 10 streams" req/s h2
row p50h2 "... p50 latency" ms h2
row p99h2 "... p99 latency" ms h2

echo
echo "### HTTP per request: the ratios round by round, and the targets"
echo
echo "| ratio | each round | median of the rounds' figures | target | met |"
echo "|---|---|--:|---|---|"
target_row() { # label metric path base op target
	local m
	m=$(ratio "${RES[$2,$3]:-}" "${RES[$2,$4]:-}")
	if [ -z "$5" ]; then
		printf '| %s | %s | %s | - | - |\n' "$1" "$(per_round "$2" "$3" "$4")" "$m"
	else
		printf '| %s | %s | %s | %s %s | %s |\n' "$1" "$(per_round "$2" "$3" "$4")" "$m" "$5" "$6" "$(verdict "$m" "$5" "$6")"
	fi
}
target_row "h2load 16 x 10: skiff-http / haproxy" h2 skiff-http haproxy ">=" 1.0
target_row "wrk 64 connections: skiff-http / haproxy" wrk64 skiff-http haproxy ">=" 1.0
target_row "wrk 64 connections: skiff-http / skiff-tcp" wrk64 skiff-http skiff-tcp ">=" 0.8
target_row "wrk 1 connection: skiff-http / haproxy" wrk1 skiff-http haproxy "" ""
echo
echo "### HTTP per request: CPU and allocations per request, over all rounds (proxy pair: first + second process = sum)"
echo
echo "| run | haproxy A + B, CPU s / 1k req | skiff-http east + west, CPU s / 1k req | skiff-tcp east + west, CPU s / 1k req | CPU skiff-http/haproxy | CPU skiff-http/skiff-tcp | skiff-http east + west, B alloc / req | skiff-tcp east + west, B alloc / req | machine busy, cores: direct / haproxy / skiff-http / skiff-tcp |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
for k in "wrk1:wrk, 1 connection" "wrk64:wrk, 64 connections" "h2:h2load, 16 x 10 streams"; do
	r=${k%%:*}
	declare -A C=()
	for path in haproxy skiff-http skiff-tcp; do
		if [ "$r" = h2 ] && [ -z "${PORT[$path,h2]:-}" ]; then C[$path]="n/a"; continue; fi
		C[$path]=$(per_k "${CPU[$r,$path]:-}" "${REQS[$r,$path]:-}")
	done
	ah=$(per_req "${ALLOC[$r,skiff-http]:-}" "${REQS[$r,skiff-http]:-}")
	at=n/a
	[ "$r" = h2 ] || at=$(per_req "${ALLOC[$r,skiff-tcp]:-}" "${REQS[$r,skiff-tcp]:-}")
	busy=""
	for path in "${PATHS[@]}"; do
		v=$(awk -v s="${BUSY[$r,$path]:-}" -v n="$ROUNDS" 'BEGIN {if (s == "") print "ERR"; else printf "%.2f", s / n}')
		[ "$r" = h2 ] && [ -z "${PORT[$path,h2]:-}" ] && v="-"
		busy+="${busy:+ / }$v"
	done
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${k#*:}" "${C[haproxy]}" "${C[skiff-http]}" "${C[skiff-tcp]}" \
		"$(ratio "$(sum_of "${C[skiff-http]}")" "$(sum_of "${C[haproxy]}")")" \
		"$(ratio "$(sum_of "${C[skiff-http]}")" "$(sum_of "${C[skiff-tcp]}")")" "$ah" "$at" "$busy"
done
echo
echo "CPU from /proc (utime + stime, all threads; ${HZ} ticks/s) over the run, divided by the requests the load tool counted; allocations from the gateways' go_memstats_alloc_bytes_total before and after the run, less what a /metrics scrape allocates (east ${SCRAPE[${MPORT[east]}]} B, west ${SCRAPE[${MPORT[west]}]} B), divided by the same."
echo "tools: $(haproxy -v | head -n 1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(h2load --version | head -n 1)"
if [ ${#FAILED[@]} -gt 0 ]; then
	echo
	echo "**FAILED: ${FAILED[*]}** (figures of a failed run are not to be used)"
	die "${#FAILED[@]} runs failed (${FAILED[*]}); their output is above"
fi
