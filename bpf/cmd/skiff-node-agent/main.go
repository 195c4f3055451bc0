// Command skiff-node-agent loads a site's eBPF programs and attaches them
// to the cgroups whose outbound connections to the site's network services
// go to their sidecar. Every site on a node has its own programs, maps and
// pins (/sys/fs/bpf/skiff/sites/<site>). Kubernetes mode (the DaemonSet of
// each site):
//
//	skiff-node-agent daemon --node-name NODE --site SITE --namespace NS --controller HOST:PORT [--cgroup-root DIR] [--bpffs DIR] [--pin-dir DIR]
//	    [--metrics-bind-address ADDR] [--health-probe-bind-address ADDR] [--cleanup-on-exit] [--kubeconfig FILE]
//
// Linux mode:
//
//	skiff-node-agent attach --site SITE --cgroup PATH [--service IP:PORT ...] [--services FILE] [--exclude-ports P,..] [--exclude-cidrs C,..]
//	skiff-node-agent services --site SITE (--service IP:PORT ... | --services FILE)
//	skiff-node-agent detach (--site SITE | --pin-dir DIR) --cgroup PATH
//	skiff-node-agent status (--site SITE | --pin-dir DIR)
//	skiff-node-agent uninstall (--site SITE | --pin-dir DIR)
//
// Every Linux command takes --pin-dir (default /sys/fs/bpf/skiff/sites/<site>).
// Every command takes --log-level and --zap-devel, and needs CAP_BPF and
// CAP_NET_ADMIN (or root).
package main

import (
	"flag"
	"fmt"
	"os"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/skiff-io/skiff/bpf/agent"
	"github.com/skiff-io/skiff/sidecar/shared/logging"
)

const usage = `usage: skiff-node-agent daemon|attach|services|detach|status|uninstall [flags]; -h after a command lists its flags`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-node-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n%s", usage)
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var o agent.Options
	var d agent.DaemonOptions
	var lo logging.Options
	if cmd == "daemon" {
		d.AddFlags(fs)
		ctrlconfig.RegisterFlags(fs) // --kubeconfig, for running outside a cluster
	} else {
		o.AddFlags(fs, cmd)
	}
	lo.AddFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if cmd != "daemon" {
		if err := o.Validate(cmd); err != nil {
			return err
		}
	}
	log, flush, err := logging.New(lo, "node-agent")
	if err != nil {
		return err
	}
	defer flush()
	switch cmd {
	case "daemon":
		ctrl.SetLogger(log.WithName("kube"))
		klog.SetLogger(log.WithName("client-go"))
		return agent.RunDaemon(ctrl.SetupSignalHandler(), d, log)
	case "attach":
		return agent.Attach(o, log)
	case "services":
		return agent.SetServices(o, log)
	case "detach":
		return agent.Detach(o, log)
	case "status":
		return agent.PrintStatus(o, os.Stdout)
	case "uninstall":
		return agent.Uninstall(o, log)
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}
