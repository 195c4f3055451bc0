#!/usr/bin/env bash
# make demo: three Linux sites on loopback, no root needed.
#
#   east (127.0.0.1) accepts links and has a listener for "echo";
#   west (127.0.0.2) dials east at cost 1 and runs an echo server;
#   north (127.0.0.3) dials east at cost 3 and runs an echo server.
#
# It shows balanced spreading (by endpoints, weighted by path cost), then
# switches echo to closest (the gateway reloads its site file), kills west's
# gateway to show failover to north, printing `skiff network status` as it
# goes. East's controller serves the console; the network keeps running
# for a look at it until Ctrl-C, or for the duration given:
#
#   hack/demo.sh [--for 30s]     (make demo DEMO_FOR=30s)
set -euo pipefail
FOR=${DEMO_FOR:-}
while [ $# -gt 0 ]; do
	case $1 in
	--for) FOR=$2; shift 2 ;;
	--for=*) FOR=${1#--for=}; shift ;;
	*) echo "usage: $0 [--for DURATION]" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/.."
BIN=$PWD/bin
DIR=$(mktemp -d "${TMPDIR:-/tmp}/skiff-demo.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"

free_port() { "$BIN/skiff-echo" port --host "$1"; } # a port free on host now
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { # url want
	for _ in $(seq 1 150); do
		if [ "$("$BIN/skiff-echo" get --url "$1" --count 1 2>/dev/null | tr -d ' ')" = "$2=1" ]; then return 0; fi
		sleep 0.1
	done
	echo "timed out waiting for $1 to answer $2" >&2
	return 1
}

LINK=$(free_port 127.0.0.1); LISTEN=$(free_port 127.0.0.1)
EAST_ADMIN=$(free_port 127.0.0.1); CTL_ADMIN=$(free_port 127.0.0.1); CTL_XDS=$(free_port 127.0.0.1)
status() { "$BIN/skiff" network status --site-file east.yaml --admin "127.0.0.1:$EAST_ADMIN" | sed 's/^/  /'; }
WEST_ECHO=$(free_port 127.0.0.2); NORTH_ECHO=$(free_port 127.0.0.3)

cat >east.yaml <<YAML
name: east
dataDir: east-data
linkAccess:
  bind: 127.0.0.1:$LINK
listeners:
  - {address: echo, host: 127.0.0.1, port: $LISTEN}
routing:
  echo: balanced
YAML

say "issue link tokens at east (skiff-router token issue)"
"$BIN/skiff-router" token issue --site-file east.yaml --out west-token.yaml --expires 15m
"$BIN/skiff-router" token issue --site-file east.yaml --out north-token.yaml --expires 15m

cat >west.yaml <<YAML
name: west
dataDir: west-data
links:
  - {token: west-token.yaml, cost: 1}
connectors:
  - {address: echo, host: 127.0.0.2, port: $WEST_ECHO}
YAML
cat >north.yaml <<YAML
name: north
dataDir: north-data
links:
  - {token: north-token.yaml, cost: 3}
connectors:
  - {address: echo, host: 127.0.0.3, port: $NORTH_ECHO}
YAML

say "start echo servers in west and north, and the three gateways"
"$BIN/skiff-echo" serve --listen 127.0.0.2:$WEST_ECHO --name west 2>/dev/null & PIDS+=($!)
"$BIN/skiff-echo" serve --listen 127.0.0.3:$NORTH_ECHO --name north 2>/dev/null & PIDS+=($!)
for s in east west north; do
	admin=0
	[ $s = east ] && admin=127.0.0.1:$EAST_ADMIN
	"$BIN/skiff-router" gateway --site-file $s.yaml --metrics-bind-address "$admin" --health-probe-bind-address 0 --zap-devel 2>$s.log &
	PIDS+=($!)
	eval "${s^^}_PID=$!"
done
# East's controller follows east's gateway's view and serves the console.
"$BIN/skiff-controller" --site-file east.yaml --gateway-admin "127.0.0.1:$EAST_ADMIN" --xds-bind-address "127.0.0.1:$CTL_XDS" \
	--metrics-bind-address "127.0.0.1:$CTL_ADMIN" --health-probe-bind-address 0 2>controller.log &
PIDS+=($!)
URL=http://127.0.0.1:$LISTEN/
wait_for "$URL" west || wait_for "$URL" north
# both sites must be in east's view before we count
for _ in $(seq 1 100); do
	out=$("$BIN/skiff-echo" get --url "$URL" --count 20)
	[[ $out == *west=* && $out == *north=* ]] && break
	sleep 0.1
done

say "skiff network status --site-file east.yaml (east's gateway view)"
status
echo "  console: http://127.0.0.1:$CTL_ADMIN/console/"

say "balanced: 60 connections from east's listener (west costs 1, north 3: about 2:1)"
"$BIN/skiff-echo" get --url "$URL" --count 60

say "switch echo to closest in east.yaml (the gateway reloads it)"
sed -i 's/echo: balanced/echo: closest/' east.yaml
for _ in $(seq 1 50); do grep -q "site file reloaded" east.log && break; sleep 0.1; done
sleep 0.2
"$BIN/skiff-echo" get --url "$URL" --count 30

say "kill west's gateway: closest fails over to north"
start=${EPOCHREALTIME/./}
{ kill -9 "$WEST_PID"; wait "$WEST_PID"; } 2>/dev/null || true
wait_for "$URL" north
end=${EPOCHREALTIME/./}
echo "first answer from north $(( (end - start) / 1000 )) ms after the kill"
"$BIN/skiff-echo" get --url "$URL" --count 30
status

say "east's log (site reachability and links)"
grep -E "link (up|down)|site (reachable|unreachable)|reloaded" east.log | sed 's/^/  /' | cut -c1-160

if [ "$FOR" = 0 ]; then
	say "done: stopping everything"
	exit 0
fi
until=" (Ctrl-C stops it)"
[ -n "$FOR" ] && until=" for $FOR"
say "the network keeps running$until: east's console is at http://127.0.0.1:$CTL_ADMIN/console/"
if [ -n "$FOR" ]; then sleep "$FOR"; else while sleep 3600; do :; done; fi
say "done: stopping everything"
