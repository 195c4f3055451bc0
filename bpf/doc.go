// Package bpf loads and attaches skiff's eBPF programs, which send a pod's
// outbound TCP connections to network services into its sidecar without
// iptables and without NET_ADMIN in the pod.
//
// The programs (redirect.c, compiled by bpf2go into redirect_bpfel.o and
// embedded) are cgroup/connect4 and cgroup/connect6, which rewrite connects
// to a service to the sidecar's port and save the original destination
// (and do the same, whatever the UID, for a connect to
// 127.0.0.1:contract.RedirectProbePort: the sidecar's redirect self-check);
// sockops, which keys that destination by network namespace and 4-tuple
// once the connection is up; and cgroup/getsockopt, which answers the
// sidecar's getsockopt(SO_ORIGINAL_DST). Load returns a Redirector that
// owns them and their maps; Attach puts them on a pod's cgroup. Every site
// on a node has its own: programs, maps and links are pinned under
// /sys/fs/bpf/skiff/sites/<site> (SitePinDir), so redirection outlives
// the node agent, a later Load picks them up again, and one site's
// uninstall leaves the others alone. ArmProbe makes the self-check read
// back as the site's own address, so a sidecar knows that its site's
// programs redirect it.
//
// The generated object types never leave this package. docs/ebpf.md
// describes the maps, the choices and the failure modes.
package bpf
