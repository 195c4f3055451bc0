// Package e2e holds the end-to-end scenario on a real single-node cluster
// (hack/cluster-up.sh): skiff installed twice with its Helm chart, linked
// with the token flow, a client pod injected with the sidecar reaching a
// backend in the other site through eBPF redirection. Its tests build only
// with the e2e tag: `make e2e` (root, after `make images`).
package e2e
