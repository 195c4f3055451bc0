package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/redirect"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/exclude"
)

// IPTablesInitOptions are the flags of `skiff-router iptables-init`, the
// skiff-init container of the iptables redirect mode.
type IPTablesInitOptions struct {
	Rules redirect.Rules
	// DryRun prints the ruleset instead of installing it.
	DryRun bool
	// Remove deletes the ruleset instead of installing it.
	Remove bool
}

// AddFlags registers the options on fs, with the contract's port and UID
// as defaults.
func (o *IPTablesInitOptions) AddFlags(fs *flag.FlagSet) {
	o.Rules.ProxyUID = contract.SidecarUID
	fs.IntVar(&o.Rules.OutboundPort, "outbound-port", contract.SidecarOutboundPort, "the sidecar's outbound port: outbound TCP connections are redirected to it")
	fs.Func("proxy-uid", "the sidecar's UID, whose connections are never redirected but for its self-check to "+contract.RedirectProbeHost+":"+strconv.Itoa(contract.RedirectProbePort)+" (default "+strconv.Itoa(contract.SidecarUID)+")", func(s string) error {
		uid, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("want a number from 1 to %d", uint32(1<<32-1))
		}
		o.Rules.ProxyUID = uint32(uid)
		return nil
	})
	fs.Func("exclude-outbound-ports", "comma-separated destination ports never redirected, e.g. 53,5432 (the form of the config.skiff.io/exclude-outbound-ports annotation)", func(s string) (err error) {
		o.Rules.ExcludePorts, err = exclude.ParsePorts(s)
		return err
	})
	fs.Func("exclude-outbound-cidrs", "comma-separated destination CIDRs (IPv4 or IPv6) never redirected, e.g. 10.0.0.0/8,fd00::/8", func(s string) (err error) {
		o.Rules.ExcludeCIDRs, err = exclude.ParseCIDRs(s)
		return err
	})
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the nftables ruleset and install nothing")
	fs.BoolVar(&o.Remove, "remove", false, "delete the nftables table inet "+redirect.TableName+" instead of installing it")
}

// Validate reports conflicting options and rules out of range.
func (o *IPTablesInitOptions) Validate() error {
	if o.DryRun && o.Remove {
		return errors.New("--dry-run and --remove exclude each other")
	}
	if o.Remove {
		return nil
	}
	return o.Rules.Validate()
}

// RunIPTablesInit installs the pod's redirect in the current network
// namespace (or, with --remove, deletes it); with --dry-run it writes the
// ruleset to out instead.
func RunIPTablesInit(o IPTablesInitOptions, out io.Writer, log logr.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	table := "inet " + redirect.TableName
	switch {
	case o.DryRun:
		_, err := io.WriteString(out, o.Rules.String())
		return err
	case o.Remove:
		if err := redirect.Remove(); err != nil {
			return err
		}
		log.Info("rules removed", "table", table)
		return nil
	}
	if err := redirect.Install(o.Rules); err != nil {
		return err
	}
	log.Info("rules installed", "table", table, "outboundPort", o.Rules.OutboundPort, "proxyUID", o.Rules.ProxyUID,
		"excludedPorts", len(o.Rules.ExcludePorts), "excludedCIDRs", len(o.Rules.ExcludeCIDRs), "rules", o.Rules.NumRules())
	return nil
}
