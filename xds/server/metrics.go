package server

import (
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the server; none has a per-node label.
type metrics struct {
	clients         prometheus.Gauge
	nacks           *prometheus.CounterVec
	pushes          prometheus.Counter
	pushDuration    prometheus.Histogram
	translateErrors prometheus.Counter
	services        prometheus.Gauge
	refused         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_xds_connected_clients",
			Help: "Open ADS streams (state-of-the-world and delta).",
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_xds_nacks_total",
			Help: "Responses rejected by clients, by resource type.",
		}, []string{"type"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_xds_pushes_total",
			Help: "New snapshots (table versions) served to every node.",
		}),
		pushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skiff_xds_push_duration_seconds",
			Help:    "Time to translate a table and hand its snapshot to every node's watches.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8), // 1ms .. 16s
		}),
		translateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_xds_translate_errors_total",
			Help: "Tables that could not be translated (the served version was kept).",
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_xds_services",
			Help: "Services in the snapshot served now.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_xds_refused_connections_total",
			Help: "Connections to a TLS listener whose handshake failed: no client certificate, one not signed by the site CA, or not TLS.",
		}),
	}
	for _, t := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType} {
		m.nacks.WithLabelValues(typeName(t)) // export zeros
	}
	if reg != nil {
		reg.MustRegister(m.clients, m.nacks, m.pushes, m.pushDuration, m.translateErrors, m.services, m.refused)
	}
	return m
}

// typeName is the short name of an xDS type URL, for metric labels and
// Status: listener, route, cluster, endpoint, or "other".
func typeName(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "listener"
	case resource.RouteType:
		return "route"
	case resource.ClusterType:
		return "cluster"
	case resource.EndpointType:
		return "endpoint"
	}
	return "other"
}
