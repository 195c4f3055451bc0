// Package redirect installs the iptables-mode redirect of an injected pod:
// in the pod's network namespace, every outbound TCP connection not made by
// the sidecar's UID, not leaving through loopback and not to an excluded
// port or CIDR is redirected to the sidecar's outbound port, where the
// sidecar reads the original destination with SO_ORIGINAL_DST. A connect to
// 127.0.0.1:15002 (contract.RedirectProbePort) is redirected first, whatever
// the UID: the sidecar's check that the rules are in place.
//
// The rules are one nftables table, inet skiff (IPv4 and IPv6), with one
// NAT chain on the output hook; [Rules.String] prints it as
// `nft list table inet skiff` does. [Install] writes it over netlink in one
// atomic batch that replaces any previous table skiff, so running it again
// gives the same ruleset; [Remove] deletes it. No iptables or nft binary is
// needed: iptables-nft would write the same kernel nf_tables objects.
//
// [Rules], its flag parsing and its listing do no I/O and build everywhere;
// Install and Remove work on Linux only.
package redirect
