// Package agent is skiff-node-agent, in two modes.
//
// Linux mode (Attach, SetServices, Detach, PrintStatus, Uninstall) attaches
// a site's eBPF redirection to a cgroup (a group of processes sharing a
// network namespace with their sidecar), fills the site's services map,
// detaches, and reports status, one command at a time.
//
// Kubernetes mode (RunDaemon, the DaemonSet's `daemon` command) does the
// same for one site's injected pods on one node, continuously: it watches
// the pods of the site's namespace scheduled to its node, attaches the
// site's programs to the cgroup of each pod that carries skiff.io/status
// (with the exclusions of its config.skiff.io/exclude-outbound-*
// annotations), detaches pods that are gone, fills the site's services
// map from the site controller over xDS, arms the site's self-check, and
// serves metrics and health probes. Each site runs its own agent with its
// own pin dir, side by side on the same nodes. Programs, maps and links
// stay pinned when it stops, so redirection holds while the agent
// restarts or upgrades. docs/ebpf.md ("The node agent DaemonSet",
// "Several sites on one node") has the details.
package agent
