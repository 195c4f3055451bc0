#!/usr/bin/env bash
# make bench-multicast (and make bench, after http.sh): skiff's HTTP
# multicast (routing multicast, package sidecar/l7) to 6 endpoints in 3
# sites, against unicast to the same endpoints through the same gateways,
# measured in one run on this machine. Needs bin/ (make build) and the
# Debian tools wrk, curl (hack/install-deps.sh installs them).
#
# Three sites on 127.0.0.1, one gateway each: east (link access, the
# listeners, two connectors per address), west and north (each dials east;
# two connectors per address each). Six skiff-echo servers, two per site;
# every address has all six as its endpoints (each site's connectors name
# its own two). All three addresses are protocol http, and every site's
# file declares the same routing and multicast mode for them:
#   uni        routing balanced: one copy per request, to one of the six
#              endpoints. The baseline. Balanced weighs path cost (design.md,
#              "Routing patterns"): east's two endpoints weigh 1 each, west
#              and north (2 endpoints, cost 1) 1 each, so half the requests
#              are answered in east and a quarter over each link (the
#              report prints the split).
#   mc-events  routing multicast, multicast events: every request copied to
#              all six (east's two, one copy to west and one to north, each
#              copying it to its two); 202 Accepted once all answered.
#   mc-agg     routing multicast, multicast aggregate: the same copies; 200
#              with a JSON document listing the six answers.
# Before measuring, each path must answer a POST end to end, the multicast
# ones with Skiff-Multicast-Delivered: 6 (all six endpoints in the three
# sites reached).
# Workloads: wrk POST / with a 5-byte body (text/plain; skiff-echo echoes
# it, 200), HTTP/1.1 keep-alive, 1 and 16 connections, BENCH_TIME seconds
# each, to each address, after a warm-up (1s, 16 connections, not
# measured). While each load runs, the CPU time of the three
# gateways is read from /proc and divided by the requests served.
# After each multicast run, east's skiff_http_multicast_copies_total for
# the address is checked: no copy failed, and the copies delivered are 6 per
# request wrk counted (at least 99% of that, at most that plus 6 per
# connection: requests in flight when wrk stopped); west's and north's
# skiff_http_multicast_site_copies_total, one per request each, are printed.
# Prints Markdown tables; exits 1 if a run failed (wrk failed, counted socket
# errors or non-2xx/3xx answers, or the copy counts are off).
#
# Environment:
#   BENCH_TIME    seconds per run (default 5)
#   BENCH_KEEP    if set, keep the work directory (logs, raw outputs)
#   BENCH_MAX_PROCS  the gateways' --max-procs (default 0: Go's default,
#                 one per core)
#   BENCH_HALT_POLL_NS  as in http.sh and router.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$PWD/bin
# shellcheck disable=SC2034 # read by lib.sh
BENCH_NAME=skiff-bench-multicast
# shellcheck disable=SC2034 # read by lib.sh
BENCH_TOOLS=(wrk curl ss timeout)
# shellcheck disable=SC2034
BENCH_BINS=(skiff-router skiff-echo)
# shellcheck disable=SC2034
BENCH_MAKE=bench-multicast
# shellcheck source=hack/bench/lib.sh disable=SC1091 # (followed with shellcheck -x)
source "$PWD/hack/bench/lib.sh"

SITES=(east west north)
ADDRS=(uni mc-events mc-agg)
COPIES=6 # endpoints of every address: two in each of the three sites
CONNS=(1 16)

m0=$(machine_ticks); sleep 1; idle_busy=$(awk -v a="$m0" -v b="$(machine_ticks)" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}')
if awk -v b="$idle_busy" 'BEGIN {exit !(b > 0.25)}'; then
	echo "bench: warning: the machine was $idle_busy cores busy before the bench started; figures will be low and noisy" >&2
fi

# --- endpoints: two skiff-echo per site ------------------------------------------
declare -A ECHO # ECHO[site] = "port port"
for s in "${SITES[@]}"; do
	ECHO[$s]=""
	for i in 1 2; do
		p=$(free_port)
		"$BIN/skiff-echo" serve --listen "127.0.0.1:$p" --name "$s-$i" 2>"echo-$s-$i.log" & PIDS+=($!)
		ECHO[$s]+="${ECHO[$s]:+ }$p"
	done
done
for s in "${SITES[@]}"; do for p in ${ECHO[$s]}; do wait_listen "$p"; done; done
log "endpoints: skiff-echo east-1/2 :${ECHO[east]// /,}, west-1/2 :${ECHO[west]// /,}, north-1/2 :${ECHO[north]// /,}"

# --- sites ---------------------------------------------------------------------
declare -A LPORT # east's listener of each address
for a in "${ADDRS[@]}"; do LPORT[$a]=$(free_port); done
LINK=$(free_port)
entry() { # address host port: one listener or connector, with the address's protocol and multicast mode
	local mode=
	case $1 in
	mc-events) mode=", multicast: events, multicastTimeout: 5s" ;;
	mc-agg) mode=", multicast: aggregate, multicastTimeout: 5s" ;;
	esac
	printf '  - {address: %s, host: %s, port: %s, protocol: http%s}\n' "$1" "$2" "$3" "$mode"
}
site_file() { # site: its site file on stdout
	local s=$1 a p
	printf 'name: %s\ndataDir: %s-data\n' "$s" "$s"
	if [ "$s" = east ]; then
		printf 'linkAccess:\n  bind: 127.0.0.1:%s\nlisteners:\n' "$LINK"
		for a in "${ADDRS[@]}"; do entry "$a" 127.0.0.1 "${LPORT[$a]}"; done
	else
		printf 'links:\n  - {token: %s-token.yaml, cost: 1}\n' "$s"
	fi
	printf 'connectors:\n'
	for a in "${ADDRS[@]}"; do for p in ${ECHO[$s]}; do entry "$a" 127.0.0.1 "$p"; done; done
	printf 'routing:\n  uni: balanced\n  mc-events: multicast\n  mc-agg: multicast\n'
}
log "skiff: east (listeners) <- mTLS links dialled by west and north; uni balanced, mc-events multicast events, mc-agg multicast aggregate"
site_file east >east.yaml
for s in west north; do
	"$BIN/skiff-router" token issue --site-file east.yaml --out "$s-token.yaml" --expires 15m >/dev/null
	site_file "$s" >"$s.yaml"
done

declare -A MPORT GW # each gateway's /metrics port and pid
for s in "${SITES[@]}"; do
	MPORT[$s]=$(free_port)
	"$BIN/skiff-router" gateway --site-file "$s.yaml" \
		--metrics-bind-address "127.0.0.1:${MPORT[$s]}" --health-probe-bind-address 0 \
		--max-procs "${BENCH_MAX_PROCS:-0}" 2>"$s.log" &
	PIDS+=($!)
	GW[$s]=$!
done
sleep 0.5
for s in "${SITES[@]}"; do
	kill -0 "${GW[$s]}" 2>/dev/null || { tail -n 5 "$s.log" >&2; die "the $s gateway exited"; }
done

# post ADDRESS: one POST to east's listener of the address; prints
# "status delivered failed" (the Skiff-Multicast-* headers, - if none).
post() {
	curl -s --max-time 6 -o "probe-$1.body" -D "probe-$1.head" -X POST -H 'Content-Type: text/plain' \
		--data-binary event "http://127.0.0.1:${LPORT[$1]}/" >/dev/null 2>&1 || { echo "000 - -"; return 0; }
	awk 'BEGIN {s = "000"; d = "-"; f = "-"}
		{sub(/\r$/, ""); k = tolower($1)}
		k ~ /^http\// {s = $2}
		k == "skiff-multicast-delivered:" {d = $2}
		k == "skiff-multicast-failed:" {f = $2}
		END {print s, d, f}' "probe-$1.head"
}
wait_path() { # address: until it answers end to end (multicast: from all six endpoints)
	local r=
	for _ in $(seq 1 200); do
		r=$(post "$1")
		case $1 in
		uni) [ "${r%% *}" = 200 ] && [ "$(<"probe-$1.body")" = event ] && return 0 ;;
		mc-events) [ "$r" = "202 $COPIES 0" ] && return 0 ;;
		mc-agg) [ "$r" = "200 $COPIES 0" ] && return 0 ;;
		esac
		sleep 0.1
	done
	cat "probe-$1.head" "probe-$1.body" >&2 2>/dev/null || true
	die "$1 does not answer end to end (last answer: status, delivered, failed = $r)"
}
for a in "${ADDRS[@]}"; do wait_path "$a"; done
# mc-agg's document lists an answer from each of the six endpoints, each 200
# with the body back (one answer a line in probe-mc-agg.answers).
sed 's/{"site":/\n&/g' probe-mc-agg.body >probe-mc-agg.answers
for s in "${SITES[@]}"; do
	for p in ${ECHO[$s]}; do
		grep -F "{\"site\":\"$s\",\"endpoint\":\"127.0.0.1:$p\",\"status\":200," probe-mc-agg.answers | grep -qF '"body":"event"' ||
			{ cat probe-mc-agg.body >&2; die "mc-agg's answer lacks a 200 with the body back from endpoint 127.0.0.1:$p of $s"; }
	done
done

metrics() { curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } # port
copies() { # address result: east's skiff_http_multicast_copies_total of the address and result, all sites
	metrics "${MPORT[east]}" | awk -v a="address=\"$1\"" -v r="result=\"$2\"" \
		'$1 ~ /^skiff_http_multicast_copies_total\{/ && index($1, a) && index($1, r) {n += $2} END {printf "%.0f", n}'
}
site_copies() { # site address: that site's skiff_http_multicast_site_copies_total of the address
	metrics "${MPORT[$1]}" | awk -v a="address=\"$2\"" \
		'$1 ~ /^skiff_http_multicast_site_copies_total\{/ && index($1, a) {n += $2} END {printf "%.0f", n}'
}
for s in west north; do
	[ "$(site_copies "$s" mc-events)" -gt 0 ] ||
		die "$s has not counted the copies east sent it (skiff_http_multicast_site_copies_total{address=\"mc-events\"} is 0)"
done

# --- measuring ------------------------------------------------------------------
cat >post.lua <<'LUA'
wrk.method = "POST"
wrk.body = "event"
wrk.headers["Content-Type"] = "text/plain"
LUA

# RES[metric,address] = figure; CPU[run,address] = CPU seconds of each
# gateway, "east west north"; REQS[run,address] = requests wrk counted;
# BUSY[run,address] = machine cores busy; COUNTS[run,address] = the copy
# counts, as printed.
declare -A RES CPU REQS BUSY COUNTS
FAILED=()
fail() { # run address file message
	echo "bench: $1 via $2 failed: $4" >&2
	[ -z "$3" ] || tail -n 8 "$3" >&2
	FAILED+=("$1 via $2")
}

# run RUN ADDRESS CONNECTIONS: one wrk run, the gateways' CPU meanwhile,
# and for a multicast address the copies east counted meanwhile.
run() {
	local key=$1 a=$2 c=$3 out=wrk$3-$2.txt s t0 t1 m0 d0=0 f0=0 d1 f1 n secs=() e
	local -A before=() w0=()
	if [ "$a" != uni ]; then
		d0=$(copies "$a" delivered) f0=$(copies "$a" failed)
		for s in west north; do w0[$s]=$(site_copies "$s" "$a"); done
	fi
	for s in "${SITES[@]}"; do before[$s]=$(cpu_ticks "${GW[$s]}"); done
	m0=$(machine_ticks)
	t0=$(now_us)
	if ! timeout --foreground -k 5 $((T + 30)) wrk -t$((c > 1 ? 2 : 1)) -c"$c" -d"${T}s" --latency -s post.lua \
		"http://127.0.0.1:${LPORT[$a]}/" >"$out" 2>&1; then
		fail "$key" "$a" "$out" "wrk exited with an error"
		return 0
	fi
	t1=$(now_us)
	BUSY[$key,$a]=$(awk -v a="$m0" -v b="$(machine_ticks)" -v hz="$HZ" -v us=$((t1 - t0)) \
		'BEGIN {printf "%.2f", (b - a) / hz / (us / 1e6)}')
	for s in "${SITES[@]}"; do
		secs+=("$(awk -v a="${before[$s]}" -v b="$(cpu_ticks "${GW[$s]}")" -v hz="$HZ" 'BEGIN {printf "%.4f", (b - a) / hz}')")
	done
	CPU[$key,$a]="${secs[*]}"
	RES[$key,$a]=$(wrk_rps "$out")
	RES[p50x$c,$a]=$(wrk_ms "$out" 50)
	RES[p99x$c,$a]=$(wrk_ms "$out" 99)
	n=$(wrk_reqs "$out")
	REQS[$key,$a]=$n
	e=$(wrk_errors "$out")
	[ -z "$e" ] || fail "$key" "$a" "$out" "$(tr '\n' ' ' <<<"$e")"
	sleep 1 # let the requests in flight when wrk stopped finish, and the gateways settle between runs
	[ "$a" != uni ] || return 0
	d1=$(copies "$a" delivered) f1=$(copies "$a" failed)
	local dd=$((d1 - d0)) ff=$((f1 - f0)) lo hi
	lo=$(awk -v n="$n" -v k="$COPIES" 'BEGIN {printf "%.0f", k * n * 0.99}')
	hi=$((COPIES * n + COPIES * c))
	COUNTS[$key,$a]="$n requests; east counted $dd copies delivered ($(awk -v d="$dd" -v n="$n" 'BEGIN {printf "%.3f", n ? d / n : 0}') per request; expected $lo to $hi), $ff failed; west $(($(site_copies west "$a") - w0[west])), north $(($(site_copies north "$a") - w0[north])) site copies"
	if [ "$ff" -ne 0 ]; then
		fail "$key" "$a" "" "east counted $ff failed copies (skiff_http_multicast_copies_total{address=\"$a\",result=\"failed\"}); see east.log"
		grep -m 3 'multicast copies failed' east.log >&2 || true
	fi
	if [ "$dd" -lt "$lo" ] || [ "$dd" -gt "$hi" ]; then
		fail "$key" "$a" "" "east counted $dd copies delivered for $n requests; expected $lo to $hi ($COPIES per request)"
	fi
	return 0
}

# Warm-up, not measured: a second of 16 connections per address, so that
# the first measured run does not pay for what the others reuse (the
# gateways' connections to their endpoints, the Go heaps' growth).
log "warm-up (not measured): wrk POST /, 16 connections, 1s per address"
for a in "${ADDRS[@]}"; do
	timeout --foreground -k 5 30 wrk -t2 -c16 -d1s -s post.lua "http://127.0.0.1:${LPORT[$a]}/" >"warmup-$a.txt" 2>&1 ||
		{ tail -n 8 "warmup-$a.txt" >&2; die "warm-up of $a: wrk failed"; }
done
sleep 1

for c in "${CONNS[@]}"; do
	log "wrk POST / (5-byte body, HTTP/1.1 keep-alive), $c connection(s), ${T}s per address: ${ADDRS[*]}"
	for a in "${ADDRS[@]}"; do run "wrk$c" "$a" "$c"; done
done
total_failed=$(copies mc-events failed)
for s in "${SITES[@]}"; do metrics "${MPORT[$s]}" >"metrics-$s.txt"; done
# Where east's HTTP engine sent uni's requests, by answering site and, if
# not 2xx, status class ("none": skiff answered itself, such as a readiness
# probe before the endpoints were known).
uni_sites=$(awk '$1 ~ /^skiff_http_requests_total\{/ && index($1, "address=\"uni\"") {
		s = $1; sub(/.*site="/, "", s); sub(/".*/, "", s)
		c = $1; sub(/.*class="/, "", c); sub(/".*/, "", c)
		n[c == "2xx" ? s : s " " c] += $2}
	END {for (s in n) printf "%s%s: %.0f", (o++ ? ", " : ""), s, n[s]}' metrics-east.txt)

# --- report -------------------------------------------------------------------------
mul() { # value k: value * k, or "" if there is none
	if [ -n "${1:-}" ]; then awk -v v="$1" -v k="$2" 'BEGIN {printf "%.0f", v * k}'; fi
}
row() { # label uni mc-events mc-agg
	printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "${2:-ERR}" "${3:-ERR}" "${4:-ERR}" "$(ratio "${3:-}" "${2:-}")" "$(ratio "${4:-}" "${2:-}")"
}
per_k() { # "x y z" requests: each per 1,000 requests and their sum, "x + y + z = sum" (3 places), or ERR
	awk -v v="${1:-}" -v n="${2:-}" 'BEGIN {k = split(v, a, " "); if (k != 3 || n + 0 == 0) {print "ERR"; exit}
		printf "%.3f + %.3f + %.3f = %.3f", a[1] * 1000 / n, a[2] * 1000 / n, a[3] * 1000 / n, (a[1] + a[2] + a[3]) * 1000 / n}'
}
sum_of() { awk -v c="$1" 'BEGIN {n = split(c, a, " "); print (n == 7 && a[7] != "ERR") ? a[7] : ""}'; } # "x + y + z = sum" -> sum

echo
echo "### HTTP multicast to $COPIES endpoints in 3 sites: throughput and latency ($(date -u +%Y-%m-%d), BENCH_TIME=${T}s, $(nproc) CPUs, $idle_busy cores busy just before, $(idle_setup))"
echo
echo "| workload | uni req/s | mc-events req/s | mc-agg req/s | mc-events/uni | mc-agg/uni |"
echo "|---|--:|--:|--:|--:|--:|"
for c in "${CONNS[@]}"; do
	w="wrk POST, $c connection$([ "$c" = 1 ] || echo s)"
	row "$w" "${RES[wrk$c,uni]:-}" "${RES[wrk$c,mc-events]:-}" "${RES[wrk$c,mc-agg]:-}"
	row "... endpoint requests/s (uni 1x, mc ${COPIES}x)" "${RES[wrk$c,uni]:-}" \
		"$(mul "${RES[wrk$c,mc-events]:-}" "$COPIES")" "$(mul "${RES[wrk$c,mc-agg]:-}" "$COPIES")"
	row "... p50 latency, ms" "${RES[p50x$c,uni]:-}" "${RES[p50x$c,mc-events]:-}" "${RES[p50x$c,mc-agg]:-}"
	row "... p99 latency, ms" "${RES[p99x$c,uni]:-}" "${RES[p99x$c,mc-events]:-}" "${RES[p99x$c,mc-agg]:-}"
done

echo
echo "### HTTP multicast: gateway CPU per 1k client requests (east + west + north = sum)"
echo
echo "| run | uni, CPU s / 1k req | mc-events, CPU s / 1k req | mc-agg, CPU s / 1k req | CPU mc-events/uni | CPU mc-agg/uni | machine busy, cores: uni / mc-events / mc-agg |"
echo "|---|--:|--:|--:|--:|--:|--:|"
for c in "${CONNS[@]}"; do
	declare -A C=()
	busy=""
	for a in "${ADDRS[@]}"; do
		C[$a]=$(per_k "${CPU[wrk$c,$a]:-}" "${REQS[wrk$c,$a]:-}")
		busy+="${busy:+ / }${BUSY[wrk$c,$a]:-ERR}"
	done
	printf '| wrk, %s connection%s | %s | %s | %s | %s | %s | %s |\n' "$c" "$([ "$c" = 1 ] || echo s)" "${C[uni]}" "${C[mc-events]}" "${C[mc-agg]}" \
		"$(ratio "$(sum_of "${C[mc-events]}")" "$(sum_of "${C[uni]}")")" \
		"$(ratio "$(sum_of "${C[mc-agg]}")" "$(sum_of "${C[uni]}")")" "$busy"
done
echo
echo "Copies (east's skiff_http_multicast_copies_total over each run, read 1s after wrk stopped; west's and north's skiff_http_multicast_site_copies_total):"
for c in "${CONNS[@]}"; do
	for a in mc-events mc-agg; do echo "- wrk, $c connection(s), $a: ${COUNTS[wrk$c,$a]:-ERR}"; done
done
echo "- mc-events copies failed over the whole run: $total_failed"
echo "- uni requests by answering site (east's skiff_http_requests_total, whole run, readiness probes and warm-up included): ${uni_sites:-none}"
echo
echo "CPU from /proc (utime + stime, all threads; ${HZ} ticks/s) over the run, divided by the requests wrk counted (a multicast request is $COPIES endpoint requests)."
echo "tools: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(curl --version | head -n 1 | cut -d' ' -f1-2)"
if [ ${#FAILED[@]} -gt 0 ]; then
	echo
	echo "**FAILED: ${FAILED[*]}** (figures of a failed run are not to be used)"
	die "${#FAILED[@]} runs failed (${FAILED[*]}); their output is above"
fi
