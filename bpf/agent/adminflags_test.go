package agent

import (
	"flag"
	"testing"
)

// The agent's admin endpoints listen on loopback unless told otherwise
// (the chart passes :15090 and :15021, for Prometheus and kubelet).
func TestAdminEndpointsLoopbackByDefault(t *testing.T) {
	var o DaemonOptions
	o.AddFlags(flag.NewFlagSet("daemon", flag.ContinueOnError))
	if o.MetricsBindAddress != "127.0.0.1:15090" || o.HealthProbeBindAddress != "127.0.0.1:15021" {
		t.Errorf("defaults: --metrics-bind-address %q, --health-probe-bind-address %q; want 127.0.0.1:15090 and 127.0.0.1:15021", o.MetricsBindAddress, o.HealthProbeBindAddress)
	}
}
