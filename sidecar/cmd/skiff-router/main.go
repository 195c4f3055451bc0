// Command skiff-router is skiff's data plane: a site's gateway, a pod's
// sidecar, and the token tool of Linux sites.
//
//	skiff-router gateway --site-file SITE.yaml [--metrics-bind-address ADDR] [--health-probe-bind-address ADDR]
//	skiff-router sidecar --site-file SITE.yaml
//	skiff-router token issue --site-file SITE.yaml --out TOKEN.yaml [--expires 15m]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/sidecar/logging"
)

const usage = `usage:
  skiff-router gateway --site-file SITE.yaml [flags]
  skiff-router sidecar --site-file SITE.yaml [flags]
  skiff-router token issue --site-file SITE.yaml --out TOKEN.yaml [--expires 15m]`

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
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		var o app.ServeOptions
		var lo logging.Options
		o.AddFlags(fs)
		lo.AddFlags(fs)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		log, flush, err := logging.New(lo, cmd)
		if err != nil {
			return err
		}
		defer flush()
		if cmd == "sidecar" {
			return app.RunSidecar(ctx, o, log)
		}
		return app.RunGateway(ctx, o, log)
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
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}
