// Command skiff-router is skiff's data plane: a site's gateway, a pod's
// sidecar, the init container of the iptables redirect mode, and the token
// tool of Linux sites.
//
//	skiff-router gateway --site-file SITE.yaml [--metrics-bind-address ADDR] [--health-probe-bind-address ADDR]
//	skiff-router sidecar --site-file SITE.yaml
//	skiff-router iptables-init [--outbound-port 15001] [--proxy-uid 1337] [--exclude-outbound-ports 53,5432] [--exclude-outbound-cidrs 10.0.0.0/8,fd00::/8] [--dry-run | --remove]
//	skiff-router token issue --site-file SITE.yaml --out TOKEN.yaml [--expires 15m]
//	skiff-router ca rotate --site-file SITE.yaml
//	skiff-router ca finish --site-file SITE.yaml
//
// iptables-init installs, in the current network namespace, the nftables
// table inet skiff that redirects the pod's outbound TCP connections to the
// sidecar (package redirect); it needs CAP_NET_ADMIN there.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/sidecar/shared/logging"
)

const usage = `usage:
  skiff-router gateway --site-file SITE.yaml [flags]
  skiff-router sidecar --site-file SITE.yaml [flags]
  skiff-router iptables-init [--exclude-outbound-ports PORTS] [--exclude-outbound-cidrs CIDRS] [--dry-run | --remove] [flags]
  skiff-router token issue --site-file SITE.yaml --out TOKEN.yaml [--expires 15m]
  skiff-router ca rotate --site-file SITE.yaml   (start a CA rotation: a new CA, the old one still trusted)
  skiff-router ca finish --site-file SITE.yaml   (end it: the old CA no longer trusted)`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-router:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n%s", usage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd := args[0]; cmd {
	case "gateway", "sidecar":
		var o app.ServeOptions
		log, flush, err := parse(cmd, args[1:], o.AddFlags)
		if err != nil {
			return err
		}
		defer flush()
		if cmd == "sidecar" {
			return app.RunSidecar(ctx, o, log)
		}
		return app.RunGateway(ctx, o, log)
	case "iptables-init":
		var o app.IPTablesInitOptions
		log, flush, err := parse(cmd, args[1:], o.AddFlags)
		if err != nil {
			return err
		}
		defer flush()
		return app.RunIPTablesInit(o, os.Stdout, log)
	case "token":
		if len(args) < 2 || args[1] != "issue" {
			return fmt.Errorf("token: want `token issue`\n%s", usage)
		}
		fs := flag.NewFlagSet("token issue", flag.ContinueOnError)
		var o app.TokenOptions
		o.AddFlags(fs)
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		tok, err := app.IssueToken(o, time.Now())
		if err != nil {
			return err
		}
		fmt.Printf("token %s for site %s written to %s, expires %s\n", tok.ID, tok.Site, o.Out, tok.Expires.Format(time.RFC3339))
		return nil
	case "ca":
		if len(args) < 2 || (args[1] != "rotate" && args[1] != "finish") {
			return fmt.Errorf("ca: want `ca rotate` or `ca finish`\n%s", usage)
		}
		fs := flag.NewFlagSet("ca "+args[1], flag.ContinueOnError)
		siteFile := fs.String("site-file", "", "site file of the site whose CA rotates")
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		if *siteFile == "" {
			return fmt.Errorf("ca %s: --site-file is required", args[1])
		}
		if args[1] == "finish" {
			if err := app.FinishCARotation(*siteFile); err != nil {
				return err
			}
			fmt.Println("CA rotation finished: the previous CA is no longer trusted")
			return nil
		}
		ca, err := app.RotateCA(*siteFile)
		if err != nil {
			return err
		}
		fmt.Printf("CA rotation started: new CA valid until %s; running gateways take it within seconds and send it to linked sites; run `skiff-router ca finish` once every linked site has it\n", ca.Cert.NotAfter.Format(time.RFC3339))
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

// parse parses a command's flags (its own, added by addFlags, and the
// logging flags) and returns its logger.
func parse(cmd string, args []string, addFlags func(*flag.FlagSet)) (logr.Logger, func(), error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var lo logging.Options
	addFlags(fs)
	lo.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return logr.Discard(), nil, err
	}
	return logging.New(lo, cmd)
}
