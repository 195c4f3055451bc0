package app

import (
	"context"
	"flag"
	"time"
)

// linuxInstead wraps a Kubernetes-only command: with --site-file it says
// what to do on a Linux site instead.
func linuxInstead(instead string, run func(context.Context, *env, []string) error) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		if e.opts.siteFile != "" {
			return kubernetesOnly("this command", instead)
		}
		return run(ctx, e, args)
	}
}

// onLinux runs linux for a Linux site (--site-file), else kube.
func onLinux(linux, kube func(context.Context, *env, []string) error) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		if e.opts.siteFile != "" {
			return linux(ctx, e, args)
		}
		return kube(ctx, e, args)
	}
}

// commands is every command of the CLI.
var commands = []command{
	{words: []string{"status"}, help: "this site: its components, links, services and recent warnings", run: siteStatus},
	{words: []string{"network", "status"}, help: "every site of the network, its links, and the sites that serve each address (-o dot: a Graphviz graph)", run: networkStatus},
	{words: []string{"token", "create"}, args: "FILE", nargs: 1, help: "ask this site for a token and write it to FILE, for `link create` on another site", run: onLinux(linuxTokenCreate, tokenCreate),
		flags: func(fs *flag.FlagSet, e *env) {
			e.stringFlag(fs, "name", "", "the token request's Secret name (default: link-to-SITE; Kubernetes only)")
			e.stringFlag(fs, "expires", "15m", "how long the token can be redeemed (a Go duration)")
			e.intFlag(fs, "uses", 1, "how many sites may redeem it")
			e.durationFlag(fs, "timeout", 30*time.Second, "how long to wait for the controller to issue it (Kubernetes only)")
		}},
	{words: []string{"link", "create"}, args: "FILE", nargs: 1, help: "link this site to the site that issued the token in FILE", run: onLinux(linuxLinkCreate, linkCreate),
		flags: func(fs *flag.FlagSet, e *env) {
			e.stringFlag(fs, "name", "", "the link's name: its Secret's, or a Linux site's copy of the token (default: the name in FILE, else link-to-PEER)")
			e.intFlag(fs, "cost", 1, "the link's cost (a whole number >= 1; routing prefers cheaper paths)")
			e.durationFlag(fs, "timeout", 30*time.Second, "how long to wait for the link to come up")
		}},
	{words: []string{"link", "list"}, help: "the links this site dials, with their peer, cost and state", run: linkList},
	{words: []string{"link", "delete"}, args: "NAME", nargs: 1, help: "delete the link NAME (its Secret; on a Linux site its peer, or its token file, in the site file)", run: onLinux(linuxLinkDelete, linkDelete)},
	{words: []string{"expose", "service"}, args: "NAME", nargs: 1, help: "expose the Service NAME to the network (sets its annotations)", run: linuxInstead("add a connector (address, host, port) to the site file", exposeService),
		flags: func(fs *flag.FlagSet, e *env) {
			e.stringFlag(fs, "address", "", "the network address (default: the Service's name)")
			e.stringFlag(fs, "routing", "", "balanced, closest or multicast (default: balanced)")
			e.stringFlag(fs, "protocol", "", "tcp, http, http2 or grpc (default: each port's appProtocol)")
		}},
	{words: []string{"debug", "dump"}, args: "FILE.tar.gz", nargs: 1, help: "write the site's status, links, events, pods, and its pods' logs and metrics to FILE.tar.gz, for a bug report (no secrets)", run: linuxInstead("attach the gateway's log and its /metrics and /view", debugDump)},
	{words: []string{"unexpose", "service"}, args: "NAME", nargs: 1, help: "withdraw the Service NAME from the network (removes its annotations)", run: linuxInstead("remove the connector from the site file", unexposeService)},
}
