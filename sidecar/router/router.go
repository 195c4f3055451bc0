// Package router is skiff's data plane: the gateway that joins a site to the
// network and the sidecar that catches a pod's outbound connections.
//
// A Router terminates and dials links (mutual-TLS connections to other
// sites' gateways, each a small pool of multiplexed connections), floods its
// site record over them and keeps the network view (package netview), and
// carries streams: from a listener or a redirected connection (origin), hop
// by hop through other gateways (transit), to a local connector (delivery).
// Every stream starts with a small binary header (address, destination site,
// origin site, hop limit) answered by a status once the far end reached an
// endpoint, so an origin can fail over to the next candidate before any
// byte of the client's is sent.
//
// The router does no parsing of site files and no certificate management:
// package app assembles a Config from those.
package router

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/l7"
	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/routing"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/logging"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
)

// Role says what a Router is.
type Role int

const (
	// RoleGateway is a site's gateway: it owns the site record, accepts and
	// dials links, serves listeners and delivers to connectors.
	RoleGateway Role = iota
	// RoleSidecar is a pod's sidecar: it accepts redirected connections and
	// reaches remote sites through one member link to its site's gateway.
	RoleSidecar
)

func (r Role) String() string {
	if r == RoleSidecar {
		return "sidecar"
	}
	return "gateway"
}

// Listener is a local entry point for a network address. A gateway binds
// Host:Port; a sidecar matches redirected connections whose original
// destination is Host:Port (a service's virtual IP).
type Listener struct {
	Address string
	Host    string
	Port    int
	// AccessLog makes a gateway write a line to Config.AccessLog for
	// every HTTP request of the connections this listener accepts (its
	// address routed per request; docs/http.md, "Access log"). A
	// sidecar ignores it: Config.SidecarAccessLog decides.
	AccessLog bool
}

// Connector is a local target for a network address.
type Connector struct {
	Address string
	Host    string
	Port    int
}

// Services is the part of the configuration that can change at run time.
type Services struct {
	Listeners  []Listener
	Connectors []Connector
	Routing    map[string]string // address -> pattern; default balanced
	// Protocols maps an address to what its endpoints speak; default
	// TCP. The requests of HTTP addresses (model.Protocol.IsHTTP) are
	// routed one by one (package l7), the rest as connections.
	Protocols map[string]model.Protocol
	// Multicast maps a multicast address to how it answers its clients;
	// one missing is the defaults (model.MulticastSpec's zero value).
	Multicast map[string]model.MulticastSpec
}

// LinkSpec is a link this router dials.
type LinkSpec struct {
	Name     string      // for logs: the token file
	Endpoint string      // host:port of the peer's link access
	TLS      *tls.Config // the token's: the peer's CA as root, server name, the token's client certificate
	Cost     int
	// PeerSite and PeerKey are the peer's site name and key (netview.KeyID
	// of its CA's key), as the token names them: the link binds the one to
	// the other. Required for gateways.
	PeerSite, PeerKey string
	// PeerKeys are further keys of the peer, for a sidecar whose
	// credential trusts its site's previous CA too during a rotation.
	PeerKeys []string
	// LinkCert returns the link certificate (PEM) the peer issued to this
	// site when it redeemed the token, nil if there is none yet; the
	// gateway then dials with it instead of the token's certificate. It
	// is asked before each dial until it has answered (a store that
	// cannot be read now is asked again). SaveLinkCert keeps a newly
	// issued one. Both may be nil (sidecars).
	LinkCert     func() ([]byte, error)
	SaveLinkCert func(certPEM []byte) error
	// Policy is what the peer may advertise into this site and reach of
	// it; the zero Policy allows everything.
	Policy policy.Policy
	// ClientTLS, if set, is asked before each dial for the TLS config to
	// dial with (a sidecar's credential, which the controller renews on
	// disk); an error keeps the last one. TLS is the first.
	ClientTLS func() (*tls.Config, error)
	// PeerCA returns the trust bundle (PEM CA certificates) the peer
	// sent over the link when it rotated its CA (rotation.go), nil if it
	// sent none; it then replaces the token's CA as the roots the peer is
	// verified with. SavePeerCA keeps a new one. Both may be nil.
	PeerCA     func() ([]byte, error)
	SavePeerCA func(bundlePEM []byte) error
	// onReply, if set, sees every hello reply (siblings.go).
	onReply func(helloReply)
}

// CertInfo names a certificate and when it expires.
type CertInfo struct {
	Kind, Name string
	NotAfter   time.Time
}

// Config configures a Router.
type Config struct {
	Site string // this router's site
	Role Role
	// Name identifies a sidecar to its gateway (pod name); unused by gateways.
	Name string

	LinkListen string      // bind address for link access; empty: dial only
	ServerTLS  *tls.Config // required with LinkListen
	Admission  Admission   // required with LinkListen

	Links    []LinkSpec
	Services Services

	// Siblings are where this site's other gateways may be found
	// (host:port, resolved every few seconds; siblings.go): a gateway
	// links to each, at cost 0, with SiblingTLS (pki.CA.SiblingTLS).
	// Gateways only.
	Siblings   []string
	SiblingTLS *tls.Config

	// Certificates are the certificates the router was given (the site
	// CA, the link port's serving certificate), for
	// skiff_certificate_expiry_timestamp_seconds.
	Certificates []CertInfo

	// SidecarListen is where a sidecar accepts redirected connections.
	SidecarListen string
	// RedirectWait is how long a sidecar's readiness waits for its
	// redirect self-check (probe.go) to come back; after it the sidecar is
	// ready anyway and checks on. 0 disables the check (a sidecar that runs
	// without redirection). Gateways ignore it.
	RedirectWait time.Duration
	// RedirectRecheck is how often a sidecar checks its redirection again
	// once verified, so that losing it (the node agent's programs
	// detached, the nftables table deleted) shows in the log and in
	// skiff_sidecar_redirect_verified. Readiness no longer depends on it.
	// 0: DefaultRedirectRecheck. Only with a RedirectWait.
	RedirectRecheck time.Duration
	// OnRedirect, if set, is told the redirect state each time the
	// self-check changes its judgement (probe.go): model.RedirectVerified
	// when verified and when restored, model.RedirectLost when lost or
	// when RedirectWait ran out before it was ever verified. It is called
	// from the checking goroutine and must not block. Only with a
	// RedirectWait.
	OnRedirect func(model.Redirect)

	PoolSize    int           // connections per link, the primary included; default 2
	Mux         mux.Config    // zero value: mux defaults
	DialTimeout time.Duration // for local connectors and link dials; default 3s
	Epoch       int64         // start time for site records; default now
	// TrafficEvery is how often a gateway reports its traffic to the
	// network (traffic.go); 0: DefaultTrafficEvery. Tests shorten it.
	TrafficEvery time.Duration
	// RecordRefresh is how often a gateway re-signs and floods its site
	// record when nothing changed; RecordMaxAge how long a record of
	// another site is kept without a newer one. 0: netview's defaults.
	// Tests shorten them.
	RecordRefresh, RecordMaxAge time.Duration
	// SiteKey is the site's private key (its CA key): it signs the site
	// record, and peers hold the site's name for it. Required for
	// gateways, unless Authority is set.
	SiteKey *ecdsa.PrivateKey
	// Authority, if set, is the site CA of a gateway that can be rotated
	// while it runs (SetCA, rotation.go): its key is the site key (and
	// SiteKey is ignored), and during a rotation the previous CA's key
	// is the site's previous key. The app builds ServerTLS and
	// SiblingTLS over it, so that they follow a rotation too.
	Authority *pki.Authority

	// AccessLog is where the HTTP access log goes (package l7's
	// AccessLine, one JSON object a line): a gateway writes the requests
	// of its listeners with Listener.AccessLog, a sidecar with
	// SidecarAccessLog every request of its pod. nil: no access log.
	AccessLog io.Writer
	// SidecarAccessLog makes a sidecar log every HTTP request of its
	// pod (its redirected connections to HTTP addresses) to AccessLog.
	// Gateways ignore it.
	SidecarAccessLog bool

	// DrainTimeout bounds a drain (Drain, drain.go): how long open
	// streams may go on before they are reset. 0: Drain stops the router
	// at once, as the end of Run's context does.
	DrainTimeout time.Duration
	// DrainIdle is how long a draining sidecar goes on serving its pod's
	// outbound port with no connection open before it stops; 0 (and
	// always for gateways, which take no new connections once draining):
	// it stops as soon as none is open. Default
	// DefaultSidecarDrainIdle for sidecars.
	DrainIdle time.Duration

	Metrics *Metrics
	Log     logr.Logger
}

func (c *Config) setDefaults() {
	if c.PoolSize <= 0 {
		c.PoolSize = 2
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 3 * time.Second
	}
	if c.Epoch == 0 {
		c.Epoch = time.Now().UnixNano()
	}
	if c.RedirectRecheck == 0 {
		c.RedirectRecheck = DefaultRedirectRecheck
	}
	if c.TrafficEvery <= 0 {
		c.TrafficEvery = DefaultTrafficEvery
	}
	if c.RecordRefresh == 0 {
		c.RecordRefresh = netview.DefaultRefresh
	}
	if c.RecordMaxAge == 0 {
		c.RecordMaxAge = netview.DefaultMaxAge
	}
	if c.DrainIdle == 0 && c.Role == RoleSidecar {
		c.DrainIdle = DefaultSidecarDrainIdle
	}
	if c.Role == RoleGateway {
		c.DrainIdle = 0
	}
	if c.SidecarListen == "" && c.Role == RoleSidecar {
		c.SidecarListen = net.JoinHostPort("127.0.0.1", strconv.Itoa(contract.SidecarOutboundPort))
	}
}

// Validate reports a configuration the router cannot run.
func (c *Config) Validate() error {
	var errs []error
	if c.Site == "" {
		errs = append(errs, errors.New("site name is empty"))
	}
	if c.LinkListen != "" && (c.ServerTLS == nil || c.Admission == nil) {
		errs = append(errs, errors.New("link access needs a server TLS config and an admission (token ledger and CA)"))
	}
	if c.Role == RoleSidecar && c.LinkListen != "" {
		errs = append(errs, errors.New("a sidecar does not accept links"))
	}
	if len(c.Siblings) > 0 && (c.Role != RoleGateway || !siblingTLSValid(c.SiblingTLS)) {
		errs = append(errs, errors.New("siblings are for gateways, with a sibling TLS config (pki.CA.SiblingTLS)"))
	}
	for _, s := range c.Siblings {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("sibling %q: want host:port: %w", s, err))
		}
	}
	if c.Role == RoleSidecar && len(c.Links) > 1 {
		errs = append(errs, fmt.Errorf("a sidecar links to its own gateway only, got %d links", len(c.Links)))
	}
	for i, l := range c.Links {
		if l.TLS == nil || l.Endpoint == "" {
			errs = append(errs, fmt.Errorf("link %d (%s): endpoint and TLS config are required", i, l.Name))
		}
		if l.Cost < 1 || l.Cost > netview.MaxCost {
			errs = append(errs, fmt.Errorf("link %d (%s): cost must be 1..%d, got %d", i, l.Name, netview.MaxCost, l.Cost))
		}
		if c.Role == RoleGateway && (l.PeerSite == "" || l.PeerKey == "") {
			errs = append(errs, fmt.Errorf("link %d (%s): the peer's site name and key are required", i, l.Name))
		}
	}
	if c.RedirectWait < 0 {
		errs = append(errs, fmt.Errorf("redirect wait must be >= 0, got %s", c.RedirectWait))
	}
	if c.RedirectRecheck < 0 {
		errs = append(errs, fmt.Errorf("redirect recheck interval must be >= 0, got %s", c.RedirectRecheck))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout must be >= 0, got %s", c.DrainTimeout))
	}
	if c.DrainIdle < 0 {
		errs = append(errs, fmt.Errorf("drain idle time must be >= 0, got %s", c.DrainIdle))
	}
	if c.RecordRefresh < 0 || c.RecordMaxAge < 0 || (c.RecordMaxAge > 0 && c.RecordMaxAge < 2*c.RecordRefresh) {
		errs = append(errs, fmt.Errorf("record max age %s must be at least twice the refresh interval %s", c.RecordMaxAge, c.RecordRefresh))
	}
	if c.Role == RoleSidecar {
		if _, port, err := net.SplitHostPort(c.SidecarListen); err == nil && port == strconv.Itoa(contract.RedirectProbePort) {
			errs = append(errs, fmt.Errorf("sidecar listen address %s: port %d is the redirect self-check's", c.SidecarListen, contract.RedirectProbePort))
		}
	}
	if c.Metrics == nil {
		errs = append(errs, errors.New("metrics are required"))
	}
	if err := c.Mux.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("mux: %w", err))
	}
	if c.Role == RoleGateway && c.SiteKey == nil && c.Authority == nil {
		errs = append(errs, errors.New("a gateway needs the site key to sign its site record"))
	}
	return errors.Join(errs...)
}

// Router is a running gateway or sidecar. Create it with New and run it
// with Run.
type Router struct {
	cfg  Config
	log  logr.Logger
	m    *Metrics
	self string // this site's name; a sidecar's view is rooted at its gateway's site
	// routerName names this router in hellos and its site record: the
	// configured Name when it is a valid router name, else the site's.
	routerName string
	picker     *routing.Picker

	db *netview.DB

	services atomic.Pointer[serviceTable]

	mu    sync.Mutex
	links map[string]*link // by link id; changed by setLinkLocked, deleteLinkLocked
	// localMu serializes updateLocal, from reading the links and services
	// to setting the site record they make.
	localMu sync.Mutex
	// limitedLinks counts the links whose policy limits what their peer
	// may advertise (countLimitedLocked).
	limitedLinks atomic.Int32

	// outstanding streams per routing key (local endpoint or site).
	outstanding sync.Map // string -> *atomic.Int64

	ready atomic.Bool
	// draining: Drain was called and the drain has begun; stopped: Run
	// is over (drain.go).
	draining, stopped atomic.Bool
	drainReq          chan struct{} // closed by Drain
	drainOnce         sync.Once
	// flows are the connections and streams the router carries
	// (flows.go); a drain waits for them.
	flows *flowSet
	// linkUp is closed, and replaced, each time a link comes up; a stream
	// whose next hop has only draining links waits on it (linkToward).
	linkUp chan struct{} // guarded by mu
	// gateway is a sidecar's newest link: the record of its gateway is
	// the sidecar's local one (db.Mirror).
	gateway atomic.Pointer[link]
	// siblingKick wakes the sibling loop at once (a sibling that should
	// dial this gateway dialled the other way); siblingsSettled is true
	// once this gateway linked to every sibling it found, or gave up
	// waiting (siblings.go); a gateway with siblings is ready only then.
	siblingKick     chan struct{}
	siblingsSettled atomic.Bool
	// lastDrain is what the last drain did, for tests.
	lastDrain atomic.Pointer[drainStats]
	// redirectVerified: the last self-check came back (probe.go);
	// redirectSettled: one came back, or RedirectWait passed without
	// one; readiness no longer waits.
	redirectVerified atomic.Bool
	redirectSettled  atomic.Bool
	// probeAddr is the self-check address (tests point it elsewhere).
	probeAddr string
	// originalDst reads a redirected connection's original destination:
	// OriginalDst (tests that run without a redirect replace it).
	originalDst func(net.Conn) (*net.TCPAddr, error)
	// lookupHost resolves a sibling entry's host (resolveSiblings):
	// net.DefaultResolver's, a test's own.
	lookupHost func(ctx context.Context, host string) ([]string, error)

	// tasks are the goroutines the router started (tasks.go); Run
	// returns once they all have.
	tasks tasks
	// workers runs the per-connection functions (workers.go), on
	// goroutines of tasks.
	workers *workers

	listenMu sync.Mutex
	// listenCtx is Run's context while it serves (nil before and after):
	// the parent of the listeners SetServices binds, since its caller's
	// context (an xDS stream's) may end long before the router does. It
	// is kept for that alone.
	listenCtx context.Context
	listeners map[string]*boundListener // by host:port
	linkAddr  atomic.Value              // net.Addr of the link listener
	sidecarLn atomic.Value              // net.Addr of the sidecar listener
	dialMu    sync.Mutex
	dialing   map[string]context.CancelFunc // by linkKey
	// runCtx is Run's context (nil before it): the parent of the dial
	// loops SetLinks starts, for the same reason. It is kept for that
	// alone.
	runCtx context.Context

	policyLog policyLog
	// trafficGather reads the counters traffic reports are made of.
	trafficGather prometheus.Gatherer
	// refusedLogs bounds the log lines of refused link connections.
	refusedLogs *logging.Limiter
	// muxConfig is cfg.Mux with the stream-refusal counter.
	muxConfig mux.Config

	// http routes the requests of HTTP addresses.
	http *l7.Engine

	unreachMu   sync.Mutex
	unreachSeen map[string]time.Time
	lastSites   map[string]bool
}

// New checks cfg and returns a Router that is not yet running.
func New(cfg Config) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("router config: %w", err)
	}
	r := &Router{
		cfg:         cfg,
		log:         cfg.Log.WithValues("site", cfg.Site, "role", cfg.Role.String()),
		m:           cfg.Metrics,
		self:        cfg.Site,
		picker:      routing.NewPicker(uint64(cfg.Epoch)),
		links:       map[string]*link{},
		listeners:   map[string]*boundListener{},
		unreachSeen: map[string]time.Time{},
		lastSites:   map[string]bool{},
		dialing:     map[string]context.CancelFunc{},
		probeAddr:   probeAddr,
		originalDst: OriginalDst,
		lookupHost:  net.DefaultResolver.LookupHost,
		drainReq:    make(chan struct{}),
		flows:       newFlowSet(),
		linkUp:      make(chan struct{}),
		siblingKick: make(chan struct{}, 1),
	}
	r.workers = newWorkers(maxIdleWorkers, workerIdleTimeout, r.tasks.Go)
	r.http = l7.New(l7.Options{Upstreams: upstreams{r}, Self: cfg.Site, Metrics: cfg.Metrics.HTTP, Log: r.log.WithName("http"), AccessLog: cfg.AccessLog, Go: r.workers.Go})
	r.refusedLogs = logging.NewLimiter(5, time.Minute)
	r.trafficGather = newTrafficGatherer(r.m)
	r.muxConfig = cfg.Mux
	r.muxConfig.OnRefuse = func(why mux.RefuseReason) {
		r.m.StreamsRefused.WithLabelValues(strings.ReplaceAll(why.String(), " ", "_")).Inc()
	}
	r.routerName = cfg.Name
	if names.CheckRouter(r.routerName) != nil {
		r.routerName = cfg.Site
	}
	r.db = netview.NewDB(cfg.Site, cfg.Epoch, dbOptions(cfg, r.routerName)...)
	r.services.Store(newServiceTable(cfg.Services))
	for _, c := range cfg.Certificates {
		r.m.CertExpiry.WithLabelValues(c.Kind, c.Name).Set(float64(c.NotAfter.Unix()))
	}
	return r, nil
}

// Run serves until ctx is cancelled, or until a drain (Drain) is over;
// then it resets the flows still open, closes every link and listener,
// and returns once every goroutine it started has returned (stop). It
// returns an error only when it cannot start (a port in use, say).
func (r *Router) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer r.stop(cancel)

	// The link port closes when a drain begins; the rest when Run ends.
	stopLinkAccess := func() {}
	if r.cfg.LinkListen != "" {
		ln, err := net.Listen("tcp", r.cfg.LinkListen)
		if err != nil {
			return fmt.Errorf("listen for links on %s: %w", r.cfg.LinkListen, err)
		}
		r.linkAddr.Store(ln.Addr())
		r.log.Info("accepting links", "bind", ln.Addr().String())
		stopLinkAccess = func() { ln.Close() }
		r.tasks.Go(func() { r.acceptLinks(ctx, ln) })
	}
	if r.cfg.Role == RoleSidecar {
		ln, err := listenProxy(ctx, "tcp", r.cfg.SidecarListen)
		if err != nil {
			return fmt.Errorf("listen for redirected connections on %s: %w", r.cfg.SidecarListen, err)
		}
		r.sidecarLn.Store(ln.Addr())
		r.log.Info("accepting redirected connections", "bind", ln.Addr().String())
		r.tasks.Go(func() { r.acceptRedirected(ctx, ln) })
		// eBPF sends IPv6 connects to [::1] on the same port; best effort,
		// since a pod may have IPv6 disabled.
		if host, port, err := net.SplitHostPort(ln.Addr().String()); err == nil && host == "127.0.0.1" {
			if ln6, err := listenProxy(ctx, "tcp6", net.JoinHostPort("::1", port)); err != nil {
				r.log.Info("no IPv6 redirect listener", "bind", net.JoinHostPort("::1", port), "error", err.Error())
			} else {
				r.log.Info("accepting redirected connections", "bind", ln6.Addr().String())
				r.tasks.Go(func() { r.acceptRedirected(ctx, ln6) })
			}
		}
		if r.cfg.RedirectWait > 0 {
			r.tasks.Go(func() { r.checkRedirect(ctx) })
		}
	} else {
		r.listenMu.Lock()
		r.listenCtx = ctx
		r.listenMu.Unlock()
		if err := r.syncListeners(); err != nil {
			return err
		}
		r.updateLocal()
	}
	r.dialMu.Lock()
	r.runCtx = ctx
	r.dialMu.Unlock()
	if err := r.SetLinks(r.cfg.Links); err != nil {
		return err
	}
	r.tasks.Go(func() { r.gcLoop(ctx) })
	r.tasks.Go(func() { r.http.Run(ctx) })
	if r.cfg.Role == RoleGateway {
		r.tasks.Go(func() { r.refreshLoop(ctx) })
		r.tasks.Go(func() { r.trafficLoop(ctx) })
	}
	if len(r.cfg.Siblings) > 0 {
		r.tasks.Go(func() { r.siblingLoop(ctx) })
	}

	r.ready.Store(true)
	drained := false
	var stats drainStats
	select {
	case <-ctx.Done():
	case <-r.drainReq:
		drained = true
		stats.reason, stats.open = r.drain(ctx, stopLinkAccess)
	}
	r.ready.Store(false)
	// Flows are reset before anything else closes: a link closed first
	// would end its streams' client connections cleanly (FIN), and a
	// client could take a cut answer for a whole one.
	stats.finished, stats.reset = r.flows.stop()
	if drained {
		r.log.Info("drain finished", "finished", stats.finished, "reset", stats.reset, "reason", stats.reason)
		r.lastDrain.Store(&stats)
	}
	return nil
}

// stop ends what Run started, whether it served or failed to start:
// flows reset (if Run has not done it), Run's context cancelled (the
// accept, dial and sibling loops end, and dials and waits of the data
// path), listeners and links closed, and then it waits for every
// goroutine of the router.
func (r *Router) stop(cancel context.CancelFunc) {
	r.flows.stop()
	cancel()
	r.stopListeners()
	r.shutdown()
	r.flows.wait()
	r.workers.stop()
	r.waitTasks()
	r.stopped.Store(true)
	r.m.Draining.Set(0)
	r.log.Info("stopped")
}

// Ready reports whether the router serves and takes new connections:
// Run has started, it is not draining, and, for a sidecar with a
// RedirectWait, its redirection is verified or the wait is over.
// Readiness says why not.
func (r *Router) Ready() bool {
	ok, _ := r.Readiness()
	return ok
}

// SidecarAddr returns the bound sidecar address once Run has started.
func (r *Router) SidecarAddr() net.Addr {
	a, _ := r.sidecarLn.Load().(net.Addr)
	return a
}

// View returns the current network view.
func (r *Router) View() *netview.View { return r.db.View() }

// Document returns the current network view in the form a controller
// reads, and a channel closed at the next change.
func (r *Router) Document() (netview.Document, <-chan struct{}) {
	ch := r.db.Changed()
	return r.filterDocument(r.db.Document()), ch
}

// SetServices replaces listeners, connectors and routing. Open streams are
// not touched; new listeners are bound and removed ones closed.
func (r *Router) SetServices(_ context.Context, s Services) error {
	r.services.Store(newServiceTable(s))
	if r.cfg.Role == RoleGateway {
		if err := r.syncListeners(); err != nil {
			return err
		}
		r.updateLocal()
	}
	return nil
}

// SetLinks replaces the links this router dials. Links whose spec did not
// change keep running untouched; removed or changed ones are closed (their
// streams end) and new ones dialled. Before Run it only records specs.
func (r *Router) SetLinks(specs []LinkSpec) error {
	for i, l := range specs {
		if l.TLS == nil || l.Endpoint == "" || l.Cost < 1 {
			return fmt.Errorf("link %d (%s): endpoint, TLS config and a cost >= 1 are required", i, l.Name)
		}
	}
	if r.cfg.Role == RoleSidecar && len(specs) > 1 {
		return fmt.Errorf("a sidecar links to its own gateway only, got %d links", len(specs))
	}
	r.dialMu.Lock()
	defer r.dialMu.Unlock()
	if r.runCtx == nil {
		r.cfg.Links = specs
		return nil
	}
	// After Run, runCtx has ended and tryGo starts nothing.
	want := map[string]LinkSpec{}
	for _, s := range specs {
		want[linkKey(s)] = s
	}
	for k, cancel := range r.dialing {
		if _, ok := want[k]; !ok {
			cancel()
			delete(r.dialing, k)
		}
	}
	for k, spec := range want {
		if _, ok := r.dialing[k]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(r.runCtx)
		if !r.tasks.tryGo(func() { r.dialLoop(ctx, spec) }) {
			cancel()
			continue
		}
		r.dialing[k] = cancel
	}
	return nil
}

// linkKey identifies a link spec: its name, endpoint, cost, policy and
// client certificate. A link whose key changes is dialled anew.
func linkKey(s LinkSpec) string {
	k := s.Name + "|" + s.Endpoint + "|" + strconv.Itoa(s.Cost) + "|" + s.Policy.String()
	if len(s.TLS.Certificates) > 0 && len(s.TLS.Certificates[0].Certificate) > 0 {
		sum := sha256.Sum256(s.TLS.Certificates[0].Certificate[0])
		k += "|" + hex.EncodeToString(sum[:8])
	}
	return k
}

// waitTasks waits for every goroutine of the router. None should take
// long once the links are closed and Run's context has ended (a link
// handshake under way ends within handshakeTimeout); one that does is
// logged, with how many are left, and waited for all the same.
func (r *Router) waitTasks() {
	done := make(chan struct{})
	go func() { r.tasks.wait(); close(done) }()
	t := time.NewTimer(slowStop)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
		r.log.Info("goroutines still running after the router stopped; waiting for them", "goroutines", r.tasks.running.Load(), "waited", slowStop.String())
	}
	<-done
}

// slowStop is how long waitTasks waits before it says it is waiting.
const slowStop = handshakeTimeout + 5*time.Second

// shutdown closes every link, once Run has reset the flows. It is no
// drain: a drain (drain.go), if there was one, is over. The GOAWAY each
// session sends first leaves in the same write as its close (mux's Close
// sends queued frames), so that a peer which reads it takes the link for
// a draining one (peerDraining) and opens no new stream on it in the
// moment before it sees the connection end.
func (r *Router) shutdown() {
	r.mu.Lock()
	links := make([]*link, 0, len(r.links))
	for _, l := range r.links {
		links = append(links, l)
	}
	r.mu.Unlock()
	for _, l := range links {
		l.goAway()
	}
	for _, l := range links {
		l.close(errors.New("router shutting down"))
	}
}

// serviceTable is an immutable snapshot of Services with lookups.
type serviceTable struct {
	Services
	// endpoints are the connectors' "host:port" by address, in the
	// order of Connectors: the keys of their outstanding counts, made
	// once.
	endpoints map[string][]string
	byVIP     map[string]string // "ip:port" -> address (sidecar matching)
}

func newServiceTable(s Services) *serviceTable {
	t := &serviceTable{Services: s, endpoints: map[string][]string{}, byVIP: map[string]string{}}
	for _, c := range s.Connectors {
		t.endpoints[c.Address] = append(t.endpoints[c.Address], net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	}
	for _, l := range s.Listeners {
		if ip := net.ParseIP(l.Host); ip != nil {
			t.byVIP[net.JoinHostPort(ip.String(), strconv.Itoa(l.Port))] = l.Address
		}
	}
	return t
}

func (t *serviceTable) pattern(address string) string {
	if p := t.Routing[address]; p != "" {
		return p
	}
	return "balanced"
}

// addressCounts is what a gateway advertises: ready endpoints per address.
func (t *serviceTable) addressCounts() map[string]int {
	out := map[string]int{}
	for a, eps := range t.endpoints {
		out[a] = len(eps)
	}
	return out
}

// declaredRouting is the routing this gateway declares in its site record:
// the non-default patterns of the addresses it has connectors for.
func (t *serviceTable) declaredRouting() map[string]string {
	out := map[string]string{}
	for a := range t.endpoints {
		if p := t.Routing[a]; p != "" && p != string(model.Balanced) {
			out[a] = p
		}
	}
	return out
}

// declaredProtocols is the protocols this gateway declares in its site
// record: those of the addresses it has connectors for that are routed
// per request (model.Protocol.IsHTTP); the rest are tcp.
func (t *serviceTable) declaredProtocols() map[string]string {
	out := map[string]string{}
	for a := range t.endpoints {
		if p := t.Protocols[a]; p.IsHTTP() {
			out[a] = string(p)
		}
	}
	return out
}

// declaredMulticast is how this gateway's multicast addresses answer, as
// it declares them in its site record (model.MulticastSpec.Text), for
// the addresses it has connectors for.
func (t *serviceTable) declaredMulticast() map[string]string {
	out := map[string]string{}
	for a := range t.endpoints {
		if t.Routing[a] == string(model.Multicast) {
			out[a] = t.Multicast[a].Text()
		}
	}
	return out
}

func (r *Router) counter(key string) *atomic.Int64 {
	if v, ok := r.outstanding.Load(key); ok {
		return v.(*atomic.Int64)
	}
	v, _ := r.outstanding.LoadOrStore(key, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// updateLocal recomputes this gateway's site record from its up links and
// connectors and floods it when it changed.
func (r *Router) updateLocal() {
	if r.cfg.Role != RoleGateway {
		return
	}
	// One at a time from the snapshot to the record: two links that come
	// up together each call this, and the call that read r.links first
	// must not publish after the other, or the site's record would lack
	// the later link for good (its peers then see the site unreachable).
	r.localMu.Lock()
	defer r.localMu.Unlock()
	links := map[string]int{}
	r.mu.Lock()
	for _, l := range r.links {
		if l.role != roleGateway || !l.isUp() {
			continue
		}
		if c, ok := links[l.node()]; !ok || l.cost < c {
			links[l.node()] = l.cost
		}
	}
	r.mu.Unlock()
	st := r.services.Load()
	_, routingChanged := r.db.SetLocalRouting(st.declaredRouting())
	_, protocolsChanged := r.db.SetLocalProtocols(st.declaredProtocols())
	_, multicastChanged := r.db.SetLocalMulticast(st.declaredMulticast())
	rec, changed := r.db.SetLocal(links, st.addressCounts())
	if changed || routingChanged || protocolsChanged || multicastChanged {
		r.log.V(1).Info("site record changed", "seq", rec.Seq, "links", len(rec.Links), "addresses", len(rec.Addresses))
		r.floodLocal()
		r.viewChanged()
	}
}

// floodLocal signs the local record and floods it to every link.
func (r *Router) floodLocal() {
	s, err := r.db.LocalSigned()
	if err != nil {
		r.log.Error(err, "sign the site record")
		return
	}
	r.flood([]netview.Signed{s}, nil)
}

// viewChanged logs sites that joined or left and updates metrics.
func (r *Router) viewChanged() {
	v := r.db.View()
	now := map[string]bool{}
	for _, s := range v.Sites() {
		now[s] = true
	}
	r.unreachMu.Lock()
	defer r.unreachMu.Unlock()
	for s := range now {
		if !r.lastSites[s] && s != r.self {
			rt := v.Routes[s]
			r.log.Info("site reachable", "peerSite", s, "cost", rt.Cost, "nextHop", rt.NextHop)
		}
	}
	for s := range r.lastSites {
		if !now[s] {
			r.log.Info("site unreachable", "peerSite", s)
		}
	}
	r.lastSites = now
	r.m.SitesReachable.Set(float64(len(now)))
}

// refreshLoop re-signs and floods the local record every RecordRefresh,
// so that peers, which drop records older than RecordMaxAge, keep it.
func (r *Router) refreshLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.RecordRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.db.Refresh()
			r.floodLocal()
		}
	}
}

// gcLoop drops records that were not refreshed for RecordMaxAge, and
// forgets records of sites that have been unreachable for a minute, so a
// network that changes over months does not accumulate them.
func (r *Router) gcLoop(ctx context.Context) {
	const forgetAfter = time.Minute
	t := time.NewTicker(min(10*time.Second, r.cfg.RecordMaxAge/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.refusedLogs.Flush(func(what string, n int) {
				r.log.Info("refusals not logged", "what", what, "suppressed", n)
			})
			if dropped := r.db.Expire(r.cfg.RecordMaxAge); len(dropped) > 0 {
				r.log.Info("site records aged out", "sites", dropped, "maxAge", r.cfg.RecordMaxAge.String())
				r.viewChanged()
			}
			v := r.db.View()
			r.unreachMu.Lock()
			seen := map[string]bool{}
			for _, s := range v.UnreachableNodes {
				seen[s] = true
				first, ok := r.unreachSeen[s]
				if !ok {
					r.unreachSeen[s] = now
				} else if now.Sub(first) > forgetAfter {
					r.db.Forget(s)
					delete(r.unreachSeen, s)
					r.log.V(1).Info("forgot unreachable gateway", "node", s)
				}
			}
			for s := range r.unreachSeen {
				if !seen[s] {
					delete(r.unreachSeen, s)
				}
			}
			r.unreachMu.Unlock()
		}
	}
}

func dbOptions(cfg Config, routerName string) []netview.Option {
	opts := []netview.Option{netview.WithRouter(routerName)}
	if cur, prev := siteKeys(cfg); cur != nil {
		opts = append(opts, netview.WithKey(cur))
		if prev != nil {
			opts = append(opts, netview.WithPrevKey(prev))
		}
	} else if len(cfg.Links) == 1 && cfg.Links[0].PeerKey != "" {
		// A sidecar holds its site's records (its gateway's siblings')
		// to the site's key, which its member token's CA names (and,
		// during a rotation, the previous key too: PeerKeys).
		opts = append(opts, netview.WithSiteKeyID(append([]string{cfg.Links[0].PeerKey}, cfg.Links[0].PeerKeys...)...))
	}
	return opts
}
