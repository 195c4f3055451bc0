package xdsclient

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the client's counters as Prometheus metrics
// (skiff_xds_connected, skiff_xds_updates_applied_total,
// skiff_xds_updates_rejected_total, skiff_xds_streams_total); who names
// the component in their help ("router", "node agent").
func (c *Client) Collectors(who string) []prometheus.Collector {
	stat := func(f func(Stats) float64) func() float64 { return func() float64 { return f(c.Stats()) } }
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "skiff_xds_connected", Help: "1 while the " + who + " follows its controller's ADS stream."},
			stat(func(s Stats) float64 {
				if s.Connected {
					return 1
				}
				return 0
			})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "skiff_xds_updates_applied_total", Help: "xDS updates the " + who + " accepted."},
			stat(func(s Stats) float64 { return float64(s.Applied) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "skiff_xds_updates_rejected_total", Help: "xDS updates the " + who + " refused (NACKed)."},
			stat(func(s Stats) float64 { return float64(s.Nacked) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "skiff_xds_streams_total", Help: "ADS streams opened to the controller, reconnects (and new streams reporting a changed redirect state) included."},
			stat(func(s Stats) float64 { return float64(s.Streams) })),
	}
}
