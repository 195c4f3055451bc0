package agent

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/skiff-io/skiff/bpf"
	"github.com/skiff-io/skiff/sidecar/shared/admin"
)

// Reasons of skiff_node_agent_attach_failures_total: few and fixed.
const (
	reasonInvalidAnnotation = "invalid_annotation" // a config.skiff.io/exclude-outbound-* value does not parse
	reasonHostNetwork       = "host_network"       // a marked pod in the node's network namespace
	reasonOtherSite         = "other_site"         // a marked pod whose sidecar is another site's
	reasonCgroup            = "cgroup"             // the pod's cgroup cannot be looked up or is not cgroup v2
	reasonExclusions        = "exclusions"         // writing the exclusions failed
	reasonAttach            = "attach"             // attaching the programs failed
)

var failureReasons = []string{reasonInvalidAnnotation, reasonHostNetwork, reasonOtherSite, reasonCgroup, reasonExclusions, reasonAttach}

// metrics are the agent's own; its registry also serves the redirector's
// counters and, when it follows a controller, the xDS client's.
type metrics struct {
	attached       prometheus.Gauge
	failures       *prometheus.CounterVec
	detachFailures prometheus.Counter
	services       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, r *bpf.Redirector, log logr.Logger) *metrics {
	m := &metrics{
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_node_agent_pods_attached",
			Help: "Pods of this node whose cgroup the agent keeps the redirection programs attached to.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_node_agent_attach_failures_total",
			Help: "Pods that could not be attached, or were refused, by reason: " + strings.Join(failureReasons, ", ") + ".",
		}, []string{"reason"}),
		detachFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_node_agent_detach_failures_total",
			Help: "Attachments that could not be removed (retried).",
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_node_agent_services",
			Help: "Service addresses (VIP:port) in the site's services map.",
		}),
	}
	for _, r := range failureReasons {
		m.failures.WithLabelValues(r)
	}
	reg.MustRegister(m.attached, m.failures, m.detachFailures, m.services, &statsCollector{r: r, log: log})
	return m
}

// statsCollector exposes the programs' per-CPU counters (bpf.Stats),
// summed, as counters. They live in a pinned map and so count from the
// first load on, across agent restarts.
type statsCollector struct {
	r   *bpf.Redirector
	log logr.Logger
}

var statsDesc = prometheus.NewDesc("skiff_node_agent_bpf_events_total",
	"What the eBPF programs did, counted since the maps were first pinned: program connect4|connect6|sockops|getsockopt, "+
		"result redirected|passed|errors (docs/ebpf.md, Programs, says what each means per program).",
	[]string{"program", "result"}, nil)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- statsDesc }

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.r.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(statsDesc, err)
		return
	}
	for _, p := range []struct {
		name string
		c    bpf.Counters
	}{{"connect4", st.Connect4}, {"connect6", st.Connect6}, {"sockops", st.Sockops}, {"getsockopt", st.Getsockopt}} {
		ch <- prometheus.MustNewConstMetric(statsDesc, prometheus.CounterValue, float64(p.c.Redirected), p.name, "redirected")
		ch <- prometheus.MustNewConstMetric(statsDesc, prometheus.CounterValue, float64(p.c.Passed), p.name, "passed")
		ch <- prometheus.MustNewConstMetric(statsDesc, prometheus.CounterValue, float64(p.c.Errors), p.name, "errors")
	}
}

// metricsServer serves reg and controller-runtime's registry (work
// queues, API client, Go runtime and process) on addr's /metrics.
func metricsServer(addr string, reg *prometheus.Registry, log logr.Logger) manager.Runnable {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{reg, crmetrics.Registry}, promhttp.HandlerOpts{}))
	return manager.RunnableFunc(func(ctx context.Context) error {
		return admin.Serve(ctx, "metrics", addr, mux, log)
	})
}
