// Command skiff-controller is a site's control plane: it keeps the site's
// service table (its own services from a site file or the Kubernetes API,
// joined with its gateway's view of the network) and serves it over xDS.
//
//	skiff-controller --site-file SITE.yaml [--gateway-admin ADDR] [--xds-bind-address ADDR]
//	skiff-controller --kube --site NAME --namespace NS [--gateway-service NAME]
//	skiff-controller status [--addr HOST:PORT]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/skiff-io/skiff/sidecar/shared/logging"
	"github.com/skiff-io/skiff/xds/app"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-controller:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "status" {
		fs := flag.NewFlagSet("status", flag.ContinueOnError)
		addr := fs.String("addr", "127.0.0.1:15090", "the controller's metrics address, which serves /status")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return status(*addr, os.Stdout)
	}
	fs := flag.NewFlagSet("skiff-controller", flag.ContinueOnError)
	var o app.Options
	var lo logging.Options
	o.AddFlags(fs)
	lo.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, flush, err := logging.New(lo, "controller")
	if err != nil {
		return err
	}
	defer flush()
	// controller-runtime and client-go log through the same logger.
	ctrl.SetLogger(log.WithName("kube"))
	klog.SetLogger(log.WithName("client-go"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return app.Run(ctx, o, log)
}

func status(addr string, w io.Writer) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/status")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: %s", resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
