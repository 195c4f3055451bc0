package app_test

import (
	"flag"
	"testing"

	"github.com/skiff-io/skiff/xds/app"
)

// /metrics and /status describe the site: by default they listen on
// loopback only (the chart passes the pod IP's :15090 and :15021).
func TestAdminEndpointsLoopbackByDefault(t *testing.T) {
	var o app.Options
	o.AddFlags(flag.NewFlagSet("skiff-controller", flag.ContinueOnError))
	if o.MetricsBindAddress != "127.0.0.1:15090" || o.HealthBindAddress != "127.0.0.1:15021" {
		t.Errorf("defaults: --metrics-bind-address %q, --health-probe-bind-address %q; want 127.0.0.1:15090 and 127.0.0.1:15021", o.MetricsBindAddress, o.HealthBindAddress)
	}
}
