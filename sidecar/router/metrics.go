package router

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/l7"
)

// Metrics are the router's Prometheus metrics. Label cardinality is bounded
// by the number of addresses and sites in the network.
type Metrics struct {
	LinksUp          *prometheus.GaugeVec
	LinkConns        *prometheus.GaugeVec
	StreamsOpened    *prometheus.CounterVec
	StreamsActive    *prometheus.GaugeVec
	AddressBytes     *prometheus.CounterVec
	PeerBytes        *prometheus.CounterVec
	PeerStreams      *prometheus.CounterVec
	ConnectFailures  *prometheus.CounterVec
	RoutingDecisions *prometheus.CounterVec
	Passthrough      prometheus.Counter
	RedirectVerified prometheus.Gauge
	SitesReachable   prometheus.Gauge
	RecordsReceived  prometheus.Counter
	// LinkRefused counts link connections refused before they joined a
	// link, by reason (tls, bad_hello, identity, token, name_taken, pool,
	// version, ...).
	LinkRefused *prometheus.CounterVec
	// RecordsRefused counts site records refused, by reason (invalid,
	// signature, key_conflict, too_many).
	RecordsRefused *prometheus.CounterVec
	// TrafficRefused counts traffic reports refused, by reason (invalid,
	// signature, key_conflict, version).
	TrafficRefused *prometheus.CounterVec
	// StreamsRefused counts streams a peer opened that were refused, by
	// reason (bad_header, hop_limit, loop, policy, member_origin).
	StreamsRefused *prometheus.CounterVec
	// PolicyRefused counts streams and routes refused by a link's policy,
	// by peer site and direction (advertise, reach).
	PolicyRefused *prometheus.CounterVec
	// Draining is 1 while the router drains (drain.go), 0 otherwise.
	Draining prometheus.Gauge
	// CertExpiry is the expiry time of each certificate the router
	// holds, by kind (link: one a peer issued to this site, by the peer
	// site; ca, gateway: set by the app) and name.
	CertExpiry *prometheus.GaugeVec
	// LinkCertsRenewed counts link certificates this gateway issued anew
	// to linked sites before theirs expired, by peer site.
	LinkCertsRenewed *prometheus.CounterVec
	// LinkUpSince is when the newest link up to a peer site came up
	// (unix seconds), 0 while none is up.
	LinkUpSince *prometheus.GaugeVec
	// HTTP are the metrics of the requests of HTTP addresses (package l7).
	HTTP *l7.Metrics
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		HTTP: l7.NewMetrics(reg),
		LinkRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_link_connections_refused_total", Help: "Connections to the link port refused before they joined a link, by reason.",
		}, []string{"reason"}),
		RecordsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_site_records_refused_total", Help: "Site records refused (invalid, unsigned or badly signed, for a name another key holds), by reason.",
		}, []string{"reason"}),
		TrafficRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_traffic_reports_refused_total", Help: "Traffic reports of other gateways refused (invalid, badly signed, by a key that does not speak for their site), by reason.",
		}, []string{"reason"}),
		PolicyRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_policy_refused_total", Help: "Streams and routes refused by a link's policy, by peer site and direction (advertise: an address the peer may not advertise here; reach: an address of this site it may not reach).",
		}, []string{"peer", "direction"}),
		StreamsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_streams_refused_total", Help: "Streams opened by a peer and refused (bad header, hop limit, loop, policy), by reason.",
		}, []string{"reason"}),
		LinksUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skiff_links_up", Help: "Links to a peer site that are up (1) or down (0).",
		}, []string{"peer", "direction"}),
		LinkUpSince: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skiff_link_up_timestamp_seconds", Help: "When the newest link to a peer site that is up came up (unix seconds); 0 while none is up.",
		}, []string{"peer"}),
		LinkConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skiff_link_connections", Help: "mTLS connections in the pool of each link.",
		}, []string{"peer"}),
		StreamsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_streams_opened_total", Help: "Streams opened, by address and role of this router (origin, transit, delivery).",
		}, []string{"address", "role"}),
		StreamsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skiff_streams_active", Help: "Streams currently open, by address and role.",
		}, []string{"address", "role"}),
		AddressBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_address_bytes_total", Help: "Bytes carried for an address, by direction (in: from the client, out: to the client).",
		}, []string{"address", "direction"}),
		PeerBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_peer_bytes_total", Help: "Stream bytes sent to and received from a neighbouring site over links.",
		}, []string{"peer", "direction"}),
		PeerStreams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_peer_streams_total", Help: "Streams opened to (direction opened) and accepted from (accepted) a neighbouring site over links.",
		}, []string{"peer", "direction"}),
		ConnectFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_connect_failures_total", Help: "Attempts to reach an endpoint that failed, by address and reason.",
		}, []string{"address", "reason"}),
		RoutingDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_routing_decisions_total", Help: "Endpoints chosen for new connections, by address, pattern and target site.",
		}, []string{"address", "pattern", "site"}),
		Passthrough: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_sidecar_passthrough_total", Help: "Redirected connections whose destination is not a network service, passed through untouched.",
		}),
		RedirectVerified: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_sidecar_redirect_verified", Help: "1 while the sidecar's redirect self-check (a connect to " + probeAddr + ") comes back through the pod's redirect (eBPF or nftables); 0 before it first does, and after three checks in a row fail.",
		}),
		SitesReachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_sites_reachable", Help: "Sites in this router's network view, itself included.",
		}),
		RecordsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_site_records_received_total", Help: "Site records received from peers (flooded link-state).",
		}),
		CertExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skiff_certificate_expiry_timestamp_seconds", Help: "When each certificate this router holds expires (unix seconds), by kind (link: the link certificate a peer site issued to this one, named by the peer site; gateway: the link port's serving certificate; ca: the site CA) and name.",
		}, []string{"kind", "name"}),
		LinkCertsRenewed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_link_certificates_renewed_total", Help: "Link certificates this gateway issued anew to a linked site over the link, before the one it had expired, by peer site.",
		}, []string{"peer"}),
		Draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_draining", Help: "1 while the router drains after SIGTERM (unready, no new connections or streams, open ones finishing), 0 otherwise.",
		}),
	}
	reg.MustRegister(m.LinksUp, m.LinkConns, m.LinkUpSince, m.StreamsOpened, m.StreamsActive, m.AddressBytes,
		m.PeerBytes, m.PeerStreams, m.ConnectFailures, m.RoutingDecisions, m.Passthrough, m.RedirectVerified, m.SitesReachable, m.RecordsReceived,
		m.LinkRefused, m.RecordsRefused, m.TrafficRefused, m.StreamsRefused, m.PolicyRefused, m.Draining, m.CertExpiry, m.LinkCertsRenewed)
	return m
}
