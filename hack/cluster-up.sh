#!/usr/bin/env bash
# Brings up a real single-node Kubernetes cluster on this machine: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy built from the Go module proxy, containerd + runc + CNI plugins
# from Debian, and locally built images (pause, skiff's) imported into
# containerd. Needs root. Idempotent: a running cluster is left alone, and
# everything heavy (binaries, images, PKI) is cached.
#
#   hack/cluster-up.sh               # build what is missing, start, wait for node + test pod
#   hack/cluster-up.sh --build-only  # only build/cache the binaries and images
#
# SKIFF_CLUSTER_DNS=0 skips building CoreDNS (one-off ~10 min); without its
# binary the cluster has no DNS and tests use ClusterIPs. Delete
# $OUT/coredns.failed to retry a failed CoreDNS build.
#   hack/cluster-down.sh             # stop everything and undo every host change
#
# Binaries:  ${SKIFF_CACHE:-~/.cache/skiff}/cluster/k8s-<version>/ (kube-apiserver
#            and etcd are reused from hack/envtest-assets.sh's cache).
# State:     ${SKIFF_CLUSTER_STATE:-/var/lib/skiff-cluster} (configs, PKI, kubeconfigs,
#            containerd root, kubelet root, logs, pids). The admin kubeconfig is
#            $STATE/admin.kubeconfig.
# Network:   node IP 10.250.0.1 on bridge skiff-node0, apiserver on :16443,
#            services 10.96.0.0/16, pods 10.244.0.0/24 on bridge skiff-cni0.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${SKIFF_CACHE:-$HOME/.cache/skiff}
ENVTEST_OUT=$CACHE/envtest/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
OUT=$CACHE/cluster/k8s-$K8S_VERSION
STATE=${SKIFF_CLUSTER_STATE:-/var/lib/skiff-cluster}
NODE_NAME=${NODE_NAME:-skiff-node}
NODE_IP=10.250.0.1
NODE_BRIDGE=skiff-node0
CNI_BRIDGE=skiff-cni0
API_PORT=${API_PORT:-16443}
ETCD_PORT=12479
ETCD_PEER_PORT=12480
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
CLUSTER_CIDR=10.244.0.0/16
POD_CIDR=10.244.0.0/24
PAUSE_IMAGE=skiff.local/pause:3.10
CONTAINERD_SOCK=/run/containerd/containerd.sock   # the default: plain `ctr -n k8s.io ...` works
RULE_COMMENT=skiff-cluster
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}

T0=$(date +%s.%N)
log() { printf 'cluster-up [%6.1fs]: %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*" >&2; }
die() { log "ERROR: $*"; log "processes started so far keep running: hack/cluster-down.sh stops them"; exit 1; }
elapsed() { echo "$(date +%s.%N) - $T0" | bc | xargs printf '%.1f'; }

# ---------------------------------------------------------------- binaries --

k8s_minor() { local m=${K8S_VERSION#v1.}; echo "${m%%.*}"; }

# Writes a throwaway module in $1 that can build k8s.io/kubernetes commands:
# every staging module (./staging/src/k8s.io/X) is replaced with its v0 tag.
k8s_module() {
	local dir=$1; shift
	local mod goline minor
	mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
	goline=$(grep -m1 '^go ' "$mod")
	minor=$(k8s_minor)
	mkdir -p "$dir"
	{
		echo "module kbuild"
		echo "$goline"
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo "replace ("
		grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$mod" | awk -v v="v0.$minor.${K8S_VERSION##*.}" '{print "\t" $1 " => " $1 " " v}'
		echo ")"
	} >"$dir/go.mod"
	{
		printf '//go:build tools\n\npackage tools\n\nimport (\n'
		for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
		printf ')\n'
	} >"$dir/tools.go"
}

build_binaries() {
	export GOFLAGS=-buildvcs=false CGO_ENABLED=0
	mkdir -p "$OUT"
	if [ ! -x "$ENVTEST_OUT/kube-apiserver" ] || [ ! -x "$ENVTEST_OUT/etcd" ]; then
		log "kube-apiserver/etcd missing from $ENVTEST_OUT: running hack/envtest-assets.sh"
		K8S_VERSION=$K8S_VERSION ETCD_VERSION=$ETCD_VERSION bash hack/envtest-assets.sh >/dev/null
	fi
	local want=(kubelet kube-controller-manager kube-scheduler kube-proxy) missing=()
	[ -x "${KUBECTL:-/usr/bin/kubectl}" ] || want+=(kubectl)
	for b in "${want[@]}"; do [ -x "$OUT/$b" ] || missing+=("$b"); done
	if [ ${#missing[@]} -gt 0 ]; then
		log "building ${missing[*]} $K8S_VERSION from the module proxy (warm cache ~3 min, cold ~10 min)"
		local work minor pkgs=()
		work=$(mktemp -d)
		minor=$(k8s_minor)
		k8s_module "$work/kbuild" "${missing[@]}"
		for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
		(cd "$work/kbuild" && go mod tidy >/dev/null 2>&1 &&
			go build -trimpath -ldflags "-s -w \
				-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
				-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
				-o "$work/bin/" "${pkgs[@]}") || { rm -rf "$work"; die "build of ${missing[*]} failed"; }
		for b in "${missing[@]}"; do mv "$work/bin/$b" "$OUT/$b"; done
		rm -rf "$work"
	fi
	# Debian's kubectl (v1.32 on bookworm) is older than the cluster; everything
	# the scripts and tests use works with it. KUBECTL=... picks another.
	KUBECTL=${KUBECTL:-/usr/bin/kubectl}
	[ -x "$KUBECTL" ] || KUBECTL=$OUT/kubectl
	if [ ! -x "$OUT/coredns" ] && [ ! -e "$OUT/coredns.failed" ] && [ "${SKIFF_CLUSTER_DNS:-1}" = 1 ]; then
		log "building coredns $COREDNS_VERSION (once; on failure cluster DNS is skipped)"
		local work
		work=$(mktemp -d)
		mkdir -p "$work/coredns"
		printf 'module corednsbuild\n\ngo 1.25\n' >"$work/coredns/go.mod"
		# Only the plugins the Corefile below uses: the full set
		# (core/plugin) pulls in every cloud SDK: 9 minutes cold against 1.5.
		cat >"$work/coredns/main.go" <<-'EOF'
			package main

			import (
				"github.com/coredns/coredns/coremain"
				_ "github.com/coredns/coredns/plugin/cache"
				_ "github.com/coredns/coredns/plugin/errors"
				_ "github.com/coredns/coredns/plugin/health"
				_ "github.com/coredns/coredns/plugin/kubernetes"
				_ "github.com/coredns/coredns/plugin/log"
				_ "github.com/coredns/coredns/plugin/ready"
			)

			func main() { coremain.Run() }
		EOF
		if (cd "$work/coredns" && timeout 900 go get "github.com/coredns/coredns@$COREDNS_VERSION" >"$work/log" 2>&1 &&
			timeout 900 go mod tidy >>"$work/log" 2>&1 &&
			timeout 900 go build -trimpath -ldflags "-s -w" -o "$OUT/coredns" . >>"$work/log" 2>&1); then
			log "coredns built"
		else
			cp "$work/log" "$OUT/coredns.failed"
			log "coredns build failed (see $OUT/coredns.failed); cluster DNS will be skipped"
		fi
		rm -rf "$work"
	fi
}

# Builds the pause image (a static Go program that waits for SIGTERM/SIGINT
# and reaps orphans) with hack/images, once.
build_pause_image() {
	local tar=$OUT/images/pause-3.10.tar
	[ -s "$tar" ] && return 0
	log "building the pause image"
	local work
	work=$(mktemp -d)
	printf 'module pause\n\ngo 1.25\n' >"$work/go.mod"
	cat >"$work/main.go" <<'GO'
// pause: the pod sandbox's init process. Waits for SIGTERM or SIGINT and reaps orphans.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	}
}
GO
	(cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" .) || { rm -rf "$work"; die "pause build failed"; }
	(cd hack/images && go run . -o "$tar" -name "$PAUSE_IMAGE" -binary "$work/pause" -user 65535 -title pause -version 3.10) ||
		{ rm -rf "$work"; die "pause image failed"; }
	rm -rf "$work"
}

# Builds CoreDNS's image from the binary build_binaries made, once.
build_coredns_image() {
	local tar=$OUT/images/coredns-$COREDNS_VERSION.tar
	[ -x "$OUT/coredns" ] || return 0
	[ -s "$tar" ] && return 0
	(cd hack/images && go run . -o "$tar" -name "skiff.local/coredns:$COREDNS_VERSION" -binary "$OUT/coredns" \
		-user 65532 -title coredns -source https://github.com/coredns/coredns -version "$COREDNS_VERSION")
}

# ------------------------------------------------------------ host packages --

install_packages() {
	local pkgs=(containerd runc containernetworking-plugins iptables conntrack) missing=()
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]} from Debian"
	local made_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		# Keep containerd's package from starting its service on install.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		{ [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
	[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
}

# ------------------------------------------------------------------- state --

pidfile() { echo "$STATE/pids/$1.pid"; }
alive() { local f; f=$(pidfile "$1"); [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

# start NAME CMD... : runs CMD in its own session, logs to $STATE/logs/NAME.log.
start() {
	local n=$1; shift
	setsid "$@" >"$STATE/logs/$n.log" 2>&1 </dev/null &
	echo $! >"$(pidfile "$n")"
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
	local t=$1 what=$2; shift 2
	local end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || { log "timed out after ${t}s waiting for $what"; return 1; }
		sleep 0.2
	done
}

SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys
	kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables)
# Host paths kubelet, containerd or the CNI plugins create outside $STATE;
# cluster-down removes those that did not exist before cluster-up.
HOST_PATHS=(/run/containerd /run/skiff-containerd /var/run/netns /var/lib/cni /var/log/containers /var/log/pods
	/var/lib/kubelet /var/lib/containerd /opt/containerd /opt/cni /etc/cni /run/flannel /var/lib/calico)

record_host_state() {
	[ -s "$STATE/sysctl-before.txt" ] && return 0
	for k in "${SYSCTLS[@]}"; do
		v=$(sysctl -n "$k" 2>/dev/null) && echo "$k=$v"
	done >"$STATE/sysctl-before.txt"
	for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done >"$STATE/paths-before.txt" || true
	ip netns list 2>/dev/null | awk '{print $1}' >"$STATE/netns-before.txt" || true
}

# ----------------------------------------------------------------- network --

setup_network() {
	if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
		ip link add "$NODE_BRIDGE" type bridge
	fi
	ip addr replace "$NODE_IP/32" dev "$NODE_BRIDGE"
	ip link set "$NODE_BRIDGE" up
	# Pod traffic never crosses the host's uplinks.
	local dev
	for dev in $(ip -o route show default | awk '{for (i=1;i<NF;i++) if ($i=="dev") print $(i+1)}' | sort -u); do
		for dir in "-i $CNI_BRIDGE -o $dev" "-i $dev -o $CNI_BRIDGE"; do
			# shellcheck disable=SC2086
			iptables -t mangle -C FORWARD $dir -m comment --comment "$RULE_COMMENT" -j DROP 2>/dev/null ||
				iptables -t mangle -I FORWARD $dir -m comment --comment "$RULE_COMMENT" -j DROP
		done
	done
}

# --------------------------------------------------------------------- PKI --

# cert NAME CN O EXTFILE-CONTENT: key + CA-signed cert under $STATE/pki.
cert() {
	local n=$1 cn=$2 o=$3 ext=$4 subj
	[ -s "$STATE/pki/$n.crt" ] && return 0
	subj="/CN=$cn"
	[ -z "$o" ] || subj="/O=$o$subj"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$STATE/pki/$n.key" 2>/dev/null
	openssl req -new -key "$STATE/pki/$n.key" -subj "$subj" -out "$STATE/pki/$n.csr" 2>/dev/null
	printf '%b\n' "$ext" >"$STATE/pki/$n.ext"
	openssl x509 -req -in "$STATE/pki/$n.csr" -CA "$STATE/pki/ca.crt" -CAkey "$STATE/pki/ca.key" -CAcreateserial \
		-days 365 -sha256 -extfile "$STATE/pki/$n.ext" -out "$STATE/pki/$n.crt" 2>/dev/null
	rm -f "$STATE/pki/$n.csr" "$STATE/pki/$n.ext"
}

gen_pki() {
	mkdir -p "$STATE/pki"
	chmod 700 "$STATE/pki"
	if [ ! -s "$STATE/pki/ca.crt" ]; then
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$STATE/pki/ca.key" 2>/dev/null
		openssl req -x509 -new -key "$STATE/pki/ca.key" -subj "/CN=skiff-cluster-ca" -days 3650 -sha256 \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
			-out "$STATE/pki/ca.crt" 2>/dev/null
	fi
	local client='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth'
	local server='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth'
	cert apiserver kube-apiserver "" "$server\nsubjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$SERVICE_IP,IP:$NODE_IP"
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "$client"
	cert admin skiff-admin system:masters "$client"
	cert kubelet "system:node:$NODE_NAME" system:nodes "$client"
	cert kubelet-serving "$NODE_NAME" "" "$server\nsubjectAltName=DNS:$NODE_NAME,IP:$NODE_IP"
	cert controller-manager system:kube-controller-manager "" "$client"
	cert scheduler system:kube-scheduler "" "$client"
	cert kube-proxy system:kube-proxy system:node-proxier "$client"
	if [ ! -s "$STATE/pki/sa.key" ]; then
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$STATE/pki/sa.key" 2>/dev/null
		openssl pkey -in "$STATE/pki/sa.key" -pubout -out "$STATE/pki/sa.pub" 2>/dev/null
	fi
	local n
	for n in admin kubelet controller-manager scheduler kube-proxy; do
		cat >"$STATE/$n.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority: $STATE/pki/ca.crt
users:
- name: $n
  user:
    client-certificate: $STATE/pki/$n.crt
    client-key: $STATE/pki/$n.key
contexts:
- name: skiff
  context: {cluster: skiff, user: $n}
current-context: skiff
KC
	done
}

# ------------------------------------------------------------------ configs --

write_configs() {
	mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/ipam"
	cat >"$STATE/containerd/config.toml" <<TOML
version = 2
root = "$STATE/containerd/root"
state = "/run/skiff-containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM's root lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
TOML
	cat >"$STATE/cni/net.d/10-skiff.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "skiff",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "${POD_CIDR%.0/24}.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
	local dns=""
	[ -x "$OUT/coredns" ] && dns="clusterDNS: [$DNS_IP]"
	cat >"$STATE/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 11250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 11248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $STATE/pki/kubelet-serving.crt
tlsPrivateKeyFile: $STATE/pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: /
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
podCIDR: $POD_CIDR
clusterDomain: cluster.local
$dns
resolvConf: /etc/resolv.conf
podLogsDir: $STATE/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
rotateCertificates: false
serverTLSBootstrap: false
YAML
	cat >"$STATE/kube-proxy-config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $CLUSTER_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:11256
metricsBindAddress: 127.0.0.1:11249
nodePortAddresses: [$NODE_IP/32]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {minSyncPeriod: 1s, syncPeriod: 30s}
YAML
}

# --------------------------------------------------------------- processes --

start_all() {
	log "starting etcd and kube-apiserver"
	start etcd "$ENVTEST_OUT/etcd" --name skiff --data-dir "$STATE/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "skiff=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
	start kube-apiserver "$ENVTEST_OUT/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
		--tls-cert-file "$STATE/pki/apiserver.crt" --tls-private-key-file "$STATE/pki/apiserver.key" \
		--client-ca-file "$STATE/pki/ca.crt" \
		--kubelet-client-certificate "$STATE/pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$STATE/pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$STATE/pki/ca.crt" --kubelet-preferred-address-types InternalIP \
		--service-account-key-file "$STATE/pki/sa.pub" --service-account-signing-key-file "$STATE/pki/sa.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--allow-privileged=true --profiling=false
	log "starting containerd and importing images while the apiserver starts"
	mkdir -p "$(dirname "$CONTAINERD_SOCK")"
	start containerd containerd --config "$STATE/containerd/config.toml"
	wait_for 30 containerd ctr --address "$CONTAINERD_SOCK" version || die "containerd did not start (see $STATE/logs/containerd.log)"

	log "containerd up"
	# pause (and coredns), plus skiff's own images when hack/images.sh built
	# them, imported in the background; wait_imports waits for them.
	local t
	IMPORT_PIDS=()
	for t in "$OUT"/images/*.tar bin/images/skiff-*.tar; do
		[ -e "$t" ] || continue
		ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$t" >/dev/null &
		IMPORT_PIDS+=($!)
	done

	wait_for 120 "kube-apiserver /readyz" curl -sf --cacert "$STATE/pki/ca.crt" \
		--cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" "https://$NODE_IP:$API_PORT/readyz" ||
		die "kube-apiserver not ready (see $STATE/logs/kube-apiserver.log)"
	T_API=$(elapsed)
	log "kube-apiserver ready"

	start kube-controller-manager "$OUT/kube-controller-manager" \
		--kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --profiling=false \
		--use-service-account-credentials=true \
		--service-account-private-key-file "$STATE/pki/sa.key" --root-ca-file "$STATE/pki/ca.crt" \
		--cluster-signing-cert-file "$STATE/pki/ca.crt" --cluster-signing-key-file "$STATE/pki/ca.key" \
		--allocate-node-cidrs=true --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
		--service-cluster-ip-range "$SERVICE_CIDR"
	start kube-scheduler "$OUT/kube-scheduler" \
		--kubeconfig "$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
		--authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --profiling=false
	start kubelet "$OUT/kubelet" --config "$STATE/kubelet-config.yaml" \
		--kubeconfig "$STATE/kubelet.kubeconfig" --hostname-override "$NODE_NAME" \
		--node-ip "$NODE_IP" --root-dir "$STATE/kubelet"
	start kube-proxy "$OUT/kube-proxy" --config "$STATE/kube-proxy-config.yaml"
}

wait_imports() {
	local p
	for p in "${IMPORT_PIDS[@]}"; do wait "$p" || die "image import failed"; done
	log "images imported"
}

# ------------------------------------------------------------------- addons --

deploy_coredns() {
	[ -x "$OUT/coredns" ] || return 0
	kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: 'system:coredns'}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: 'system:coredns'}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'system:coredns'}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      containers:
      - name: coredns
        image: skiff.local/coredns:$COREDNS_VERSION
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
        resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 128Mi}}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
YAML
}

kc() { KUBECONFIG=$STATE/admin.kubeconfig "$KUBECTL" "$@"; }

node_ready() {
	[ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

smoke_pod() {
	kc delete pod skiff-smoke --ignore-not-found --wait=false >/dev/null 2>&1 || true
	kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: skiff-smoke, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - {name: pause, image: $PAUSE_IMAGE, imagePullPolicy: Never}
YAML
}

# containerd shims talking to our containerd.
shim_pids() {
	local f pid
	for f in $(grep -lzx -- "$CONTAINERD_SOCK" /proc/[0-9]*/cmdline 2>/dev/null); do
		pid=$(echo "$f" | cut -d/ -f3)
		case "$(cat "/proc/$pid/comm" 2>/dev/null)" in containerd-shim*) echo "$pid" ;; esac
	done
}

memory_report() {
	local total=0 n pid rss r line="" f
	for f in "$STATE"/pids/*.pid; do
		n=$(basename "$f" .pid); pid=$(cat "$f")
		rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)
		rss=${rss:-0}
		total=$((total + rss))
		line+=" $n=$((rss / 1024))M"
	done
	# containerd shims and the pods' processes
	rss=0
	for pid in $(cat /sys/fs/cgroup/memory/kubepods/cgroup.procs $(find /sys/fs/cgroup/memory/kubepods -mindepth 1 -name cgroup.procs 2>/dev/null) 2>/dev/null) \
		$(shim_pids); do
		r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)
		rss=$((rss + ${r:-0}))
	done
	total=$((total + rss))
	line+=" shims+pods=$((rss / 1024))M"
	echo "RSS:$line total=$((total / 1024))M"
}

# -------------------------------------------------------------------- main --

[ "$(id -u)" = 0 ] || { echo "cluster-up: needs root" >&2; exit 1; }

build_binaries
if [ "${1:-}" = --build-only ]; then
	build_pause_image
	build_coredns_image
	ls -la "$OUT" "$OUT/images" >&2
	exit 0
fi
install_packages
build_pause_image
build_coredns_image || log "coredns image failed; cluster DNS skipped"
T_BUILD=$(elapsed)
T0=$(date +%s.%N)

mkdir -p "$STATE"
if alive kube-apiserver && alive kubelet && alive containerd && [ -s "$STATE/admin.kubeconfig" ] && node_ready; then
	log "cluster already running; admin kubeconfig:"
	echo "$STATE/admin.kubeconfig"
	exit 0
fi
if [ -n "$(ls "$STATE/pids" 2>/dev/null)" ]; then
	log "a previous cluster is partly running: tearing it down first"
	bash hack/cluster-down.sh
	mkdir -p "$STATE"
fi
chmod 700 "$STATE"
mkdir -p "$STATE/pids" "$STATE/logs"
record_host_state
setup_network
gen_pki
write_configs
start_all

wait_for 120 "node $NODE_NAME Ready" node_ready || die "node not Ready (see $STATE/logs/kubelet.log)"
T_NODE=$(elapsed)
log "node $NODE_NAME Ready"
wait_imports
wait_for 60 "default service account" kc -n default get serviceaccount default || die "no default service account"
smoke_pod
deploy_coredns
wait_for 120 "pod skiff-smoke Ready" kc wait --for=condition=Ready pod/skiff-smoke --timeout=5s ||
	die "smoke pod not Running: $(kc describe pod skiff-smoke | tail -15)"
T_POD=$(elapsed)
log "pod skiff-smoke Running"
T_DNS=skipped
if [ -x "$OUT/coredns" ]; then
	if wait_for 120 "coredns Ready" kc -n kube-system wait --for=condition=Available deploy/coredns --timeout=5s; then
		T_DNS=$(elapsed)s
		log "coredns Ready"
	fi
else
	log "no coredns binary (SKIFF_CLUSTER_DNS=0, or its build failed: $OUT/coredns.failed): cluster DNS skipped, use ClusterIPs"
fi
kc delete pod skiff-smoke --wait=false >/dev/null
log "build/check ${T_BUILD}s; apiserver ready ${T_API}s, node Ready ${T_NODE}s, first pod Running ${T_POD}s, coredns ${T_DNS}"
log "$(memory_report)"
log "kubectl: KUBECONFIG=$STATE/admin.kubeconfig $KUBECTL get pods -A   (ctr: ctr --address $CONTAINERD_SOCK -n k8s.io ...)"
echo "$STATE/admin.kubeconfig"
