package l7

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus metrics, by address and by the site
// that answered ("none" for a request skiff answered itself). Label sets
// are bounded: no path, method or endpoint address.
type Metrics struct {
	// Requests counts requests by address, answering site, status class
	// (2xx, ..., 5xx; 499 when the client went away first) and origin
	// (the site that sent the request over a link; "" for this site's
	// clients).
	Requests *prometheus.CounterVec
	// Duration is the time from the request to its answer's header.
	Duration *prometheus.HistogramVec
	// Retries counts requests sent to another candidate because the one
	// before did not reach an endpoint.
	Retries *prometheus.CounterVec
	// Pinned counts requests that upgraded their connection (WebSocket)
	// and were carried as a connection to one endpoint.
	Pinned *prometheus.CounterVec
	// Copies counts the copies of multicast requests this site sent, by
	// the site of the endpoint and result: delivered (answered 2xx) or
	// failed.
	Copies *prometheus.CounterVec
	// SiteCopies counts the multicast requests other sites sent here to
	// copy to this site's endpoints: one per request and site.
	SiteCopies *prometheus.CounterVec
	// AccessLogErrors counts access-log lines that could not be
	// written (Options.AccessLog).
	AccessLogErrors prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_http_requests_total", Help: "HTTP requests routed, by address, answering site, status class and origin (the site that sent the request here over a link; empty for this site's clients).",
		}, []string{"address", "site", "class", "origin"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skiff_http_request_duration_seconds", Help: "Time from an HTTP request to the header of its answer, by address and answering site.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"address", "site"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_http_retries_total", Help: "HTTP requests sent to another endpoint or site because the one before did not reach an endpoint, by address.",
		}, []string{"address"}),
		Pinned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_http_upgrades_total", Help: "HTTP requests that upgraded their connection (WebSocket), carried as a connection to one endpoint, by address.",
		}, []string{"address"}),
		Copies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_http_multicast_copies_total", Help: "Copies of multicast requests this site sent, by address, the endpoint's site and result (delivered: answered 2xx; failed).",
		}, []string{"address", "site", "result"}),
		SiteCopies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_http_multicast_site_copies_total", Help: "Multicast requests another site sent here to copy to this site's endpoints, by address.",
		}, []string{"address"}),
		AccessLogErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_http_access_log_errors_total", Help: "HTTP access-log lines that could not be written.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Duration, m.Retries, m.Pinned, m.Copies, m.SiteCopies, m.AccessLogErrors)
	}
	return m
}

// observe counts a request of plan p answered with code.
func (m *Metrics) observe(p *plan, code int) {
	var c series
	m.observeIn(&c, p, code)
}

// series are the metrics of one address and answering site, looked up
// once for the requests of a connection (the fast path's), or of the
// HTTP/2 streams that reuse a pooled request (of any engine: m says
// whose they are).
type series struct {
	m                     *Metrics
	address, site, origin string // "" until looked up
	duration              prometheus.Observer
	byClass               [10]prometheus.Counter // by code/100; 0 for 499
}

// observeIn is observe with c keeping the series looked up last.
func (m *Metrics) observeIn(c *series, p *plan, code int) {
	site := siteLabel(p.site)
	if c.m != m || c.address != p.address || c.site != site || c.origin != p.origin {
		*c = series{m: m, address: p.address, site: site, origin: p.origin}
		c.duration = m.Duration.WithLabelValues(p.address, site)
	}
	i := code / 100
	if code == 499 || i < 1 || i > 9 {
		i = 0
	}
	if c.byClass[i] == nil {
		class := "499"
		if i > 0 {
			class = strconv.Itoa(i) + "xx"
		}
		c.byClass[i] = m.Requests.WithLabelValues(p.address, site, class, p.origin)
	}
	c.byClass[i].Inc()
	c.duration.Observe(time.Since(p.start).Seconds())
}

// siteLabel is a metric's site label: "none" for what skiff answered
// itself.
func siteLabel(site string) string {
	if site == "" {
		return "none"
	}
	return site
}
