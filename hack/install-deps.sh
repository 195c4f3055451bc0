#!/usr/bin/env bash
# Installs the Debian packages skiff's tests drive: real clients and servers
# we did not write (curl, h2load, redis, iperf3, haproxy, wrk), openssl for the
# benchmark's certificates, clang/llvm to regenerate the eBPF objects, and
# the network tools for namespaces (util-linux: nsenter, setpriv), REDIRECT
# rules (iptables) and listing the sidecar's nftables redirect (nft);
# chromium (headless, driven by chromedp) and a font for the console tests.
# Idempotent; needs root (CI is root).
set -euo pipefail

pkgs=(iproute2 iptables nftables curl nghttp2-client redis-server redis-tools iperf3 haproxy wrk procps psmisc openssl util-linux clang llvm chromium fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "all packages present: ${pkgs[*]}"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "missing packages ${missing[*]}; run as root to install them" >&2
	exit 1
fi
echo "installing: ${missing[*]}"
# Keep packages (redis-server) from starting their services on install.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
