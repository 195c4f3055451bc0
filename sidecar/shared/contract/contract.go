// Package contract holds the names and numbers that skiff's components agree
// on: ports, the sidecar UID, annotation and label keys, and environment
// variable names. The injector, the router, the controller and the node agent
// import it so that each value is written down exactly once.
//
// Everything here is part of the user-facing contract described in
// docs/design.md; change a value only on purpose.
package contract

// Ports.
const (
	// SidecarOutboundPort is where eBPF (or an iptables REDIRECT) sends the
	// pod's redirected outbound connections; the sidecar listens on
	// 127.0.0.1 at this port.
	SidecarOutboundPort = 15001
	// RedirectProbePort is the sidecar's redirect self-check: a TCP connect
	// from the pod to 127.0.0.1:15002 is redirected to the sidecar by both
	// redirect modes (eBPF and nftables), whatever the UID (the only
	// connection of SidecarUID that is), so the sidecar can check that
	// redirection is in place by connecting there itself. Nothing in the
	// pod may listen on it.
	RedirectProbePort = 15002
	// HealthPort serves /healthz and /readyz on the sidecar and the gateway.
	HealthPort = 15021
	// MetricsPort serves Prometheus /metrics on every component.
	MetricsPort = 15090
	// XDSPort is the controller's gRPC ADS port.
	XDSPort = 15010
	// WebhookPort is the injector's TLS admission port.
	WebhookPort = 9443
	// LinkPort is the gateway's inter-site mTLS link port.
	LinkPort = 55671
)

// RedirectProbeHost is the address of the sidecar's redirect self-check,
// at RedirectProbePort.
const RedirectProbeHost = "127.0.0.1"

// SidecarUID is the user the sidecar runs as; the redirect (eBPF or
// nftables) never redirects connections made by this UID, except its
// self-check to 127.0.0.1:RedirectProbePort.
const SidecarUID = 1337

// Labels and annotations.
const (
	// InjectionLabel on a namespace opts it in to injection ("enabled").
	InjectionLabel = "skiff.io/injection"
	// InjectAnnotation on a pod opts it in ("true") or out ("false").
	InjectAnnotation = "skiff.io/inject"
	// StatusAnnotation records what the injector did to a pod.
	StatusAnnotation = "skiff.io/status"
	// ConfigAnnotationPrefix prefixes the per-pod configuration annotations.
	ConfigAnnotationPrefix = "config.skiff.io/"

	// ExposeAnnotation on a Service exposes it to the network ("true").
	ExposeAnnotation = "skiff.io/expose"
	// AddressAnnotation overrides the network address (default: Service name).
	AddressAnnotation = "skiff.io/address"
	// RoutingAnnotation selects the routing pattern (sidecar/shared/model's
	// ParsePattern and CheckRouting decide its values).
	RoutingAnnotation = "skiff.io/routing"
	// ProtocolAnnotation selects the protocol (sidecar/shared/model's
	// ParseProtocol decides its values); without it, the port's
	// appProtocol (model.AppProtocol).
	ProtocolAnnotation = "skiff.io/protocol"
	// MulticastAnnotation selects how an address routed multicast
	// answers its clients, aggregate or events (sidecar/shared/model's
	// ParseMulticast decides its values); without it, aggregate.
	MulticastAnnotation = "skiff.io/multicast"
	// MulticastTimeoutAnnotation bounds the wait for a multicast
	// request's copies, a Go duration (sidecar/shared/model's
	// ParseMulticast decides its values); without it, 5s.
	MulticastTimeoutAnnotation = "skiff.io/multicast-timeout"

	// TypeLabel marks skiff Secrets: "token-request" or "link".
	TypeLabel = "skiff.io/type"
	// CostAnnotation on a link Secret sets the link cost.
	CostAnnotation = "skiff.io/cost"
	// AllowAdvertiseAnnotation on a link Secret lists the addresses the
	// peer may advertise into this site, as comma-separated patterns
	// (package sidecar/shared/policy: backend, backend:8080, db-*, *); on a
	// token-request Secret, the same for the links made with its token.
	// Without it, every address.
	AllowAdvertiseAnnotation = "skiff.io/allow-advertise"
	// AllowReachAnnotation is like AllowAdvertiseAnnotation for the
	// addresses of this site the peer may reach.
	AllowReachAnnotation = "skiff.io/allow-reach"
)

// Token-request and link Secrets (a token-request Secret's optional
// annotations; the controller fills in its data and token id) and the
// controller's status ConfigMap: what a user, the controller and the
// skiff CLI read and write in a site's namespace.
const (
	ExpiresAnnotation     = "skiff.io/token-expires"     // duration, default 15m
	RedemptionsAnnotation = "skiff.io/token-redemptions" // default 1
	TokenIDAnnotation     = "skiff.io/token-id"          // set by the controller
	// TokenKey is the data key of a token in a request or link Secret.
	TokenKey = "token.yaml"
	// StatusConfigMap is the ConfigMap the controller keeps the site's
	// status in: model.SiteStatus as JSON, under StatusKey.
	StatusConfigMap = "skiff-status"
	StatusKey       = "status.json"
)

// Environment variables the injector sets on the sidecar container.
const (
	EnvControllerAddr = "SKIFF_CONTROLLER"
	EnvPodName        = "SKIFF_POD_NAME"
	EnvPodNamespace   = "SKIFF_POD_NAMESPACE"
	EnvSite           = "SKIFF_SITE"
)

// Per-pod configuration annotations read by the injector (all under
// ConfigAnnotationPrefix; docs/injection.md has their values).
const (
	// ConfigProxyCPUAnnotation sets the sidecar's CPU request (a quantity).
	ConfigProxyCPUAnnotation = ConfigAnnotationPrefix + "proxy-cpu"
	// ConfigProxyMemoryAnnotation sets the sidecar's memory request and limit.
	ConfigProxyMemoryAnnotation = ConfigAnnotationPrefix + "proxy-memory"
	// ConfigLogLevelAnnotation sets the sidecar's log level: debug, info or error.
	ConfigLogLevelAnnotation = ConfigAnnotationPrefix + "log-level"
	// ConfigExcludeOutboundPortsAnnotation lists destination ports (1-65535)
	// that are never redirected to the sidecar.
	ConfigExcludeOutboundPortsAnnotation = ConfigAnnotationPrefix + "exclude-outbound-ports"
	// ConfigExcludeOutboundCIDRsAnnotation lists destination CIDRs (IPv4 or
	// IPv6) that are never redirected to the sidecar.
	ConfigExcludeOutboundCIDRsAnnotation = ConfigAnnotationPrefix + "exclude-outbound-cidrs"
	// ConfigAccessLogAnnotation, "true" or "false", turns the sidecar's
	// HTTP access log on or off (its --access-log): a JSON line on stdout
	// for every HTTP request of the pod. Default off.
	ConfigAccessLogAnnotation = ConfigAnnotationPrefix + "access-log"
)

// What the injector adds to a pod.
const (
	// SidecarContainerName is the sidecar container (a native sidecar init
	// container, or the first regular container).
	SidecarContainerName = "skiff-proxy"
	// InitContainerName is the init container that installs the pod's
	// redirect rules (`skiff-router iptables-init`, nftables over netlink;
	// only in the iptables redirect mode).
	InitContainerName = "skiff-init"
	// CredentialsVolumeName is the pod volume holding the sidecar's
	// credentials Secret.
	CredentialsVolumeName = "skiff-credentials"
	// CredentialsDir is where the sidecar finds its credentials.
	CredentialsDir = "/etc/skiff/credentials"
)
