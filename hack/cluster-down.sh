#!/usr/bin/env bash
# Stops the single-node cluster hack/cluster-up.sh started and undoes every
# host change it made: processes (by their recorded pids, plus the containerd
# shims and pod processes that belong to them), pods' network namespaces,
# mounts, kubepods cgroups, the bridges, iptables rules, sysctls kubelet and
# the CNI plugins changed, and the state directory. Idempotent; needs root.
# Cached binaries and images (in $SKIFF_CACHE) and the Debian packages stay.
#
#   hack/cluster-down.sh            # tear down and verify nothing is left
set -uo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-v1.37.2}
CACHE=${SKIFF_CACHE:-$HOME/.cache/skiff}
OUT=$CACHE/cluster/k8s-$K8S_VERSION
STATE=${SKIFF_CLUSTER_STATE:-/var/lib/skiff-cluster}
NODE_BRIDGE=skiff-node0
CNI_BRIDGE=skiff-cni0
CONTAINERD_SOCK=/run/containerd/containerd.sock
RULE_COMMENT=skiff-cluster
KUBECTL=/usr/bin/kubectl
[ -x "$KUBECTL" ] || KUBECTL=$OUT/kubectl

T0=$(date +%s.%N)
log() { printf 'cluster-down [%5.1fs]: %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "cluster-down: needs root" >&2; exit 1; }

pid_of() { [ -s "$STATE/pids/$1.pid" ] && cat "$STATE/pids/$1.pid"; }
is_ours() { # pid still runs the program we started (not a recycled pid)
	local pid=$1 n=$2
	kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$n"
}
# stop NAME [GRACE]: SIGTERM, then SIGKILL after GRACE seconds (default 10).
stop() {
	local n=$1 grace=${2:-10} pid i
	pid=$(pid_of "$n") || return 0
	if is_ours "$pid" "$n"; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < grace * 10; i++)); do is_ours "$pid" "$n" || break; sleep 0.1; done
		if is_ours "$pid" "$n"; then
			log "$n ($pid) ignored SIGTERM for ${grace}s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null
			sleep 0.2
			is_ours "$pid" "$n" && log "LEFT: $n ($pid) survived SIGKILL"
		fi
	fi
	rm -f "$STATE/pids/$n.pid"
}
kc() { KUBECONFIG=$STATE/admin.kubeconfig timeout 20 "$KUBECTL" "$@"; }
shim_pids() {
	local f pid
	for f in $(grep -lzx -- "$CONTAINERD_SOCK" /proc/[0-9]*/cmdline 2>/dev/null); do
		pid=$(echo "$f" | cut -d/ -f3)
		case "$(cat "/proc/$pid/comm" 2>/dev/null)" in containerd-shim*) echo "$pid" ;; esac
	done
}
kubepods_cgroups() { ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null; }
pod_pids() {
	local d
	for d in $(kubepods_cgroups); do
		find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
	done | sort -un
}
ctrk() { timeout 20 ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# 1. Pods away while kubelet still runs (so it stops sandboxes and frees
#    their netns and IPs); the controllers first, or they re-create them.
stop kube-controller-manager
stop kube-scheduler
running() { local pid; pid=$(pid_of "$1") && is_ours "$pid" "$1"; }
if running kube-apiserver && running kubelet && [ -s "$STATE/admin.kubeconfig" ]; then
	log "deleting all pods"
	kc delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1
	for ((i = 0; i < 100; i++)); do
		[ -z "$(kc get pods -A -o name 2>/dev/null)" ] && break
		running kubelet || break
		sleep 0.2
	done
	[ $i -lt 100 ] || log "pods still listed after 20s: $(kc get pods -A -o name 2>/dev/null | tr '\n' ' ')"
fi
stop kube-proxy
stop kubelet

# 2. Whatever containerd still runs, then containerd itself.
if [ -n "$(pid_of containerd)" ]; then
	for t in $(ctrk tasks ls -q 2>/dev/null); do
		ctrk tasks kill -s SIGKILL "$t" >/dev/null 2>&1
	done
	sleep 0.5
	for t in $(ctrk tasks ls -q 2>/dev/null); do
		ctrk tasks delete -f "$t" >/dev/null 2>&1
	done
fi
stop containerd
for p in $(pod_pids) $(shim_pids); do
	log "killing leftover pid $p ($(cat /proc/"$p"/comm 2>/dev/null))"
	kill -KILL "$p" 2>/dev/null
done

# 3. Control plane: apiserver before etcd (else it hangs in shutdown).
stop kube-apiserver 15
stop etcd

# 4. iptables: kube-proxy's own cleanup, then every rule and chain that is
#    kube-proxy's, kubelet's (KUBE-*), the CNI plugins' (CNI-*) or ours.
if [ -x "$OUT/kube-proxy" ]; then
	"$OUT/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi
for ipt in iptables ip6tables; do
	command -v $ipt >/dev/null || continue
	for table in filter nat mangle raw; do
		$ipt -t $table -S 2>/dev/null | grep -E '^-A ' | grep -E -- "KUBE-|CNI-|--comment \"?$RULE_COMMENT\"? " |
			while read -r line; do
				eval "$ipt -t $table -D ${line#-A }" 2>/dev/null || true
			done
		for chain in $($ipt -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ {print $2}'); do
			$ipt -t $table -F "$chain" 2>/dev/null
		done
		for chain in $($ipt -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ {print $2}'); do
			$ipt -t $table -X "$chain" 2>/dev/null
		done
	done
done

# 5. Network namespaces the pods left (only new cni-* ones), mounts, links.
if [ -d /var/run/netns ]; then
	for ns in $(ls /var/run/netns 2>/dev/null); do
		case $ns in cni-*) ;; *) continue ;; esac
		grep -qx "$ns" "$STATE/netns-before.txt" 2>/dev/null && continue
		umount "/var/run/netns/$ns" 2>/dev/null
		rm -f "/var/run/netns/$ns"
	done
fi
for m in $(findmnt -rn -o TARGET | grep -E "^($STATE|/run/skiff-containerd|/run/containerd)(/|$)" | sort -r); do
	umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
done
for l in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
	ip link del "$l" 2>/dev/null
done
ip link del "$CNI_BRIDGE" 2>/dev/null
ip link del "$NODE_BRIDGE" 2>/dev/null

# 6. kubepods cgroups (every hierarchy), deepest first.
for d in $(kubepods_cgroups); do
	find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 7. sysctls kubelet, kube-proxy and the bridge plugin changed.
if [ -s "$STATE/sysctl-before.txt" ]; then
	while IFS== read -r k v; do
		[ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -q -w "$k=$v" >/dev/null 2>&1 || log "could not restore $k=$v"
	done <"$STATE/sysctl-before.txt"
fi

# 8. Directories made outside $STATE that did not exist before, then $STATE.
if [ -s "$STATE/paths-before.txt" ] || [ -e "$STATE/sysctl-before.txt" ]; then
	for p in /run/containerd /run/skiff-containerd /var/lib/cni /var/log/containers /var/log/pods /var/lib/kubelet \
		/var/lib/containerd /opt/containerd /etc/cni /var/run/netns; do
		grep -qx "$p" "$STATE/paths-before.txt" 2>/dev/null && continue
		if [ "$p" = /var/run/netns ]; then
			# Creating a netns bind-mounts the directory onto itself; undo that
			# only if it is empty (other tests on this host may use it).
			if [ -d "$p" ] && [ -z "$(ls -A "$p")" ]; then
				umount "$p" 2>/dev/null
				rmdir "$p" 2>/dev/null
			fi
		else
			rm -rf "$p"
		fi
	done
fi
rm -rf "$STATE"

# 9. Verify.
left=0
p=$( { shim_pids; pod_pids; } | tr '\n' ' ')
[ -z "${p// /}" ] || { log "LEFT: processes $p"; left=1; }
ip link show "$CNI_BRIDGE" >/dev/null 2>&1 && { log "LEFT: $CNI_BRIDGE"; left=1; }
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && { log "LEFT: $NODE_BRIDGE"; left=1; }
r=$(for t in filter nat mangle raw; do iptables -t $t -S 2>/dev/null; done | grep -cE -- "KUBE-|CNI-|$RULE_COMMENT")
[ "$r" = 0 ] || { log "LEFT: $r iptables rules/chains"; left=1; }
m=$(findmnt -rn -o TARGET | grep -cE "^($STATE|/run/containerd|/run/skiff-containerd)(/|$)|/var/run/netns/cni-")
[ "$m" = 0 ] || { log "LEFT: $m mounts"; left=1; }
[ -z "$(kubepods_cgroups)" ] || { log "LEFT: kubepods cgroups"; left=1; }
[ $left = 0 ] && log "clean: no processes, links, rules, mounts, cgroups or state left"
exit $left
