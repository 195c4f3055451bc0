// Command skiff-injector is skiff's mutating admission webhook: it adds the
// skiff-proxy sidecar to pods annotated skiff.io/inject: "true" in the
// site's namespace. Flags are listed by --help and in docs/injection.md.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"k8s.io/klog/v2"

	"github.com/skiff-io/skiff/sidecar/shared/logging"
	"github.com/skiff-io/skiff/webhook/app"
)

func main() {
	fs := flag.NewFlagSet("skiff-injector", flag.ExitOnError)
	var o app.Options
	var lo logging.Options
	o.AddFlags(fs)
	lo.AddFlags(fs)
	ctrlconfig.RegisterFlags(fs) // --kubeconfig, for running outside a cluster
	_ = fs.Parse(os.Args[1:])

	lg, flush, err := logging.New(lo, "skiff-injector")
	if err != nil {
		fmt.Fprintln(os.Stderr, "skiff-injector:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(lg)
	klog.SetLogger(lg.WithName("client-go"))
	ctx := log.IntoContext(ctrl.SetupSignalHandler(), lg)
	if err := app.Run(ctx, o); err != nil {
		lg.Error(err, "injector stopped")
		flush()
		os.Exit(1)
	}
	flush()
}
