// Package agent is skiff-node-agent, in two modes.
//
// Linux mode (Attach, SetServices, Detach, PrintStatus, Uninstall) attaches
// skiff's eBPF redirection to a cgroup (a group of processes sharing a
// network namespace with their sidecar), fills the node-wide services map,
// detaches, and reports status, one command at a time.
//
// Kubernetes mode (RunDaemon, the DaemonSet's `daemon` command) does the
// same for the injected pods of one node, continuously: it watches the
// pods scheduled to its node, attaches the programs to the cgroup of each
// pod that carries skiff.io/status (with the exclusions of its
// config.skiff.io/exclude-outbound-* annotations), detaches pods that are
// gone, fills the services map from the site controller over xDS, and
// serves metrics and health probes. Programs, maps and links stay pinned
// when it stops, so redirection holds while the agent restarts or
// upgrades. docs/ebpf.md ("The node agent DaemonSet") has the details.
package agent
