// Package app assembles skiff-router's commands from their options: it reads
// the site file, creates or loads the site's CA and certificates, checks
// link tokens, starts the router with its health and metrics endpoints, and
// issues tokens (package datadir, which the skiff CLI runs as well). The
// router itself (package router) knows nothing of files.
package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/admin"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/datadir"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/state"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
)

// ServeOptions are the flags shared by the gateway and the sidecar.
type ServeOptions struct {
	SiteFile           string
	MetricsBindAddress string // "0" disables
	HealthBindAddress  string // "0" disables
	// Name identifies a sidecar to its gateway; default the host name.
	Name string
	// MaxProcs caps the cores the router's Go scheduler uses; 0 keeps Go's
	// default (the cores, or the container's CPU limit).
	MaxProcs int
	// Controller is the xDS address of the site's controller. When set,
	// services (listeners, connectors, routing) come from it and those of
	// the site file are ignored; identity, link access and links still
	// come from the site file.
	Controller string
	// CredentialsDir holds token.yaml, a token issued by the site's gateway,
	// for a sidecar without a site file (Kubernetes): the token names the
	// site and the gateway's link endpoint. Needs Controller.
	CredentialsDir string
	// OutboundBindAddress is where a sidecar accepts redirected
	// connections; default 127.0.0.1:15001 (the contract).
	OutboundBindAddress string
	// RedirectWait is how long a sidecar's /readyz waits for its redirect
	// self-check (router.Config.RedirectWait); 0 disables the check.
	// Gateways ignore it.
	RedirectWait time.Duration
	// RedirectRecheck is how often a verified sidecar checks its
	// redirection again (router.Config.RedirectRecheck; 0: its default).
	RedirectRecheck time.Duration
	// Kube is how a gateway whose site file names a stateSecret reaches
	// the API server; nil: the pod's service account (state.InCluster).
	// Not a flag: for tests and embedding.
	Kube *state.Kube
	// DrainTimeout bounds the drain that SIGTERM starts
	// (router.Config.DrainTimeout): open streams may go on this long
	// before they are reset. 0 stops at once. The flag's default is
	// router.DefaultDrainTimeout.
	DrainTimeout time.Duration
	// LinkCertValidity is how long the link certificates a gateway
	// issues to linked sites last (0: a year). For tests: a short one
	// makes renewal run.
	LinkCertValidity time.Duration
	// AccessLog (--access-log) makes a sidecar log every HTTP request of
	// its pod (router.Config.SidecarAccessLog), and a gateway those of
	// the listeners its controller gives it (Kubernetes; the chart's
	// gateway.accessLog). A gateway's site file listeners choose for
	// themselves (accessLog). The access log goes to stdout; the logger
	// writes to stderr.
	AccessLog bool
}

// DefaultRedirectWait is --redirect-wait's default: long enough for a node
// agent to attach a new pod, well within the injected startup probe's
// five minutes.
const DefaultRedirectWait = time.Minute

// AddFlags registers the options on fs.
func (o *ServeOptions) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.SiteFile, "site-file", "", "site file (YAML) describing this site; see docs/site-file.md")
	fs.StringVar(&o.Name, "name", "", "this router's name: a gateway's among its site's gateways (two gateway processes of one site need two names), a sidecar's to its gateway; default namespace/pod in Kubernetes, else the host name")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", "127.0.0.1:"+strconv.Itoa(contract.MetricsPort), "address of the Prometheus /metrics endpoint and a gateway's /view, which describe the network (docs/install.md); loopback by default, :"+strconv.Itoa(contract.MetricsPort)+" for every interface; 0 disables it")
	fs.StringVar(&o.HealthBindAddress, "health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(contract.HealthPort), "address of /healthz and /readyz; loopback by default, :"+strconv.Itoa(contract.HealthPort)+" for every interface (kubelet probes the pod IP); 0 disables it")
	fs.StringVar(&o.OutboundBindAddress, "outbound-bind-address", "", "sidecar only: where redirected connections arrive; default 127.0.0.1:"+strconv.Itoa(contract.SidecarOutboundPort))
	fs.DurationVar(&o.RedirectWait, "redirect-wait", DefaultRedirectWait, "sidecar only: how long /readyz waits until a connect to "+contract.RedirectProbeHost+":"+strconv.Itoa(contract.RedirectProbePort)+
		" comes back through the pod's redirect (eBPF or nftables); then ready anyway, checking on. 0 disables the check, for a sidecar without redirection")
	fs.DurationVar(&o.RedirectRecheck, "redirect-recheck", router.DefaultRedirectRecheck, "sidecar only: once verified, how often the redirect is checked again; three failures in a row log that it was lost and set skiff_sidecar_redirect_verified to 0 (readiness stays)")
	fs.StringVar(&o.CredentialsDir, "credentials-dir", "", "sidecar only: directory with token.yaml, the site gateway's token, instead of a site file (needs --controller)")
	fs.StringVar(&o.Controller, "controller", "", "xDS address (host:port) of the site's skiff-controller; services then come from it instead of the site file")
	fs.DurationVar(&o.LinkCertValidity, "link-cert-validity", 0, "for tests: how long the link certificates this gateway issues to linked sites last (default a year); they are renewed over the link when two thirds are over")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", router.DefaultDrainTimeout, "on SIGTERM: how long open streams may go on before they are reset; meanwhile /readyz fails and a gateway takes no new connections, while a sidecar goes on serving its pod; keep it below the pod's terminationGracePeriodSeconds. 0 stops at once; a second SIGTERM or SIGINT ends the drain")
	fs.BoolVar(&o.AccessLog, "access-log", false, "write a JSON line to stdout for every HTTP request (docs/http.md, \"Access log\"): a sidecar's, of its pod; a gateway's, of the listeners its controller gives it (the site file's listeners log with accessLog: true)")
	fs.IntVar(&o.MaxProcs, "max-procs", 0, "cores the router may use at once (GOMAXPROCS); 0 keeps Go's default (the cores, or the container's CPU limit); see docs/design.md, Cores")
}

// Validate reports missing or malformed options.
func (o *ServeOptions) Validate() error {
	var errs []error
	switch {
	case o.SiteFile == "" && o.CredentialsDir == "":
		errs = append(errs, errors.New("--site-file is required (or, for a sidecar, --credentials-dir with --controller)"))
	case o.SiteFile != "" && o.CredentialsDir != "":
		errs = append(errs, errors.New("--site-file and --credentials-dir exclude each other"))
	case o.CredentialsDir != "" && o.Controller == "":
		errs = append(errs, errors.New("--credentials-dir needs --controller: services come from the controller"))
	}
	if o.RedirectWait < 0 {
		errs = append(errs, fmt.Errorf("--redirect-wait must be >= 0, got %s", o.RedirectWait))
	}
	if o.RedirectRecheck < 0 {
		errs = append(errs, fmt.Errorf("--redirect-recheck must be >= 0, got %s", o.RedirectRecheck))
	}
	if o.MaxProcs < 0 {
		errs = append(errs, fmt.Errorf("--max-procs must be >= 0, got %d", o.MaxProcs))
	}
	if o.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("--drain-timeout must be >= 0, got %s", o.DrainTimeout))
	}
	if o.LinkCertValidity < 0 || (o.LinkCertValidity > 0 && o.LinkCertValidity < 10*time.Second) {
		errs = append(errs, fmt.Errorf("--link-cert-validity must be at least 10s, got %s", o.LinkCertValidity))
	}
	for flagName, v := range map[string]string{"--metrics-bind-address": o.MetricsBindAddress, "--health-probe-bind-address": o.HealthBindAddress} {
		if v == "0" {
			continue
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", flagName, v, err))
		}
	}
	return errors.Join(errs...)
}

// RunGateway runs a site's gateway from its site file until ctx ends.
func RunGateway(ctx context.Context, o ServeOptions, log logr.Logger) error {
	return run(ctx, o, router.RoleGateway, log)
}

// RunSidecar runs a sidecar: listeners in the site file are the service
// virtual IPs to match, connectors the endpoints reachable directly, and its
// one link a token issued by the site's gateway.
func RunSidecar(ctx context.Context, o ServeOptions, log logr.Logger) error {
	return run(ctx, o, router.RoleSidecar, log)
}

func run(ctx context.Context, o ServeOptions, role router.Role, log logr.Logger) (err error) {
	site, err := loadSite(o, role)
	if err != nil {
		return err
	}
	// A start that fails (a port in use) takes back the dirs it created,
	// a new data dir with its CA, once everything it started has stopped:
	// the next start, with the cause fixed, begins where this one did.
	created := datadir.Missing(site.DataDir, site.CADir)
	up := false // the router was serving when the run failed
	defer func() {
		if err != nil && !up {
			datadir.RemoveCreated(created, log)
		}
	}()
	if o.MaxProcs > 0 {
		runtime.GOMAXPROCS(o.MaxProcs)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, err := OpenState(site, role, o.Kube)
	if err != nil {
		return err
	}
	cfg, err := serveConfig(o, site, role, store, reg, log)
	if err != nil {
		return err
	}
	var xc *xdsclient.Client
	if o.Controller != "" {
		cfg.OnRedirect = redirectToController(&xc)
	}
	r, err := router.New(cfg)
	if err != nil {
		return err
	}
	if o.Controller != "" {
		if xc, err = newXDSClient(o.Controller, role, site, cfg.Name, o.AccessLog, r, reg, log); err != nil {
			return err
		}
	}
	// Everything runs on life, not ctx: when ctx ends (SIGTERM) the router
	// drains while health, metrics, the xDS client and the watchers go
	// on. life ends once the router has stopped (the drain is over), at
	// the first error of any of them, or at a second signal; run returns
	// once every one of them has returned.
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	g := &runGroup{life: life, stop: stop, r: r, up: &up}
	g.runRouter(ctx, log)
	g.serveAdmin(o, reg, log)
	if xc != nil {
		g.spawn(xc.Run)
	}
	g.watch(o, site, store, cfg.Authority != nil, log)
	return g.wait()
}

// loadSite checks the options and loads the site: from the site file, or
// for a sidecar from its credentials dir.
func loadSite(o ServeOptions, role router.Role) (*sitefile.Site, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.CredentialsDir != "" && role != router.RoleSidecar {
		return nil, errors.New("--credentials-dir is for sidecars; a gateway needs a site file")
	}
	if o.CredentialsDir != "" {
		return credentialsSite(o.CredentialsDir)
	}
	return sitefile.Load(o.SiteFile)
}

// serveConfig returns the router's configuration: the site's (Config),
// with the metrics registered in reg and what the options set.
func serveConfig(o ServeOptions, site *sitefile.Site, role router.Role, store state.Store, reg *prometheus.Registry, log logr.Logger) (router.Config, error) {
	cfg, err := Config(site, role, store, log)
	if err != nil {
		return router.Config{}, err
	}
	cfg.Metrics = router.NewMetrics(reg)
	if o.CredentialsDir != "" && len(cfg.Links) == 1 {
		cfg.Links[0].ClientTLS = credentialReloader(site.Links[0].Token, log)
	}
	if a, ok := cfg.Admission.(*token.Admission); ok {
		a.LinkValidity = o.LinkCertValidity
	}
	cfg.DrainTimeout = o.DrainTimeout
	cfg.Name = routerName(o.Name)
	// The access log goes to stdout, apart from the log (stderr). A
	// gateway always has it: a reloaded site file may turn a listener's
	// on.
	cfg.AccessLog = os.Stdout
	if role == router.RoleSidecar {
		if o.OutboundBindAddress != "" {
			cfg.SidecarListen = o.OutboundBindAddress
		}
		cfg.RedirectWait = o.RedirectWait
		cfg.RedirectRecheck = o.RedirectRecheck
		cfg.SidecarAccessLog = o.AccessLog
		if !o.AccessLog {
			cfg.AccessLog = nil
		}
	} else if o.AccessLog && o.Controller == "" {
		log.Info("--access-log logs the requests of the listeners a controller gives a gateway; without --controller it does nothing: the site file's listeners log with accessLog: true")
	}
	if o.Controller != "" {
		if len(site.Listeners)+len(site.Connectors) > 0 {
			log.Info("services come from the controller; the site file's listeners and connectors are ignored", "controller", o.Controller)
		}
		cfg.Services = router.Services{}
	}
	return cfg, nil
}

// routerName returns the router's name: name (--name) if set, else
// namespace/pod in Kubernetes, else the host name.
func routerName(name string) string {
	if name == "" && os.Getenv(contract.EnvPodName) != "" {
		name = os.Getenv(contract.EnvPodNamespace) + "/" + os.Getenv(contract.EnvPodName)
	}
	if name == "" {
		name, _ = os.Hostname()
	}
	return name
}

// runGroup runs the router and everything that goes with it on life, and
// waits for every one of them.
type runGroup struct {
	g      errgroup.Group
	life   context.Context
	stop   context.CancelFunc // ends life
	r      *router.Router
	failed sync.Once
	up     *bool // run's: whether the router was serving when the run failed
}

// spawn runs f on life; an error ends life for the others, and the
// first records whether the router was serving when the run failed.
func (g *runGroup) spawn(f func(context.Context) error) {
	g.g.Go(func() error {
		err := f(g.life)
		if err != nil {
			g.failed.Do(func() { *g.up = g.r.Ready() })
			g.stop()
		}
		return err
	})
}

// runRouter runs the router on life, and drains it when ctx ends first.
func (g *runGroup) runRouter(ctx context.Context, log logr.Logger) {
	g.g.Go(func() error {
		defer g.stop() // the router has stopped: so does everything else
		return g.r.Run(g.life)
	})
	g.g.Go(func() error {
		select {
		case <-ctx.Done():
			drain(g.life, g.r, g.stop, log)
		case <-g.life.Done():
		}
		return nil
	})
}

// serveAdmin serves the metrics (with a gateway's /view) and health
// endpoints the options do not disable.
func (g *runGroup) serveAdmin(o ServeOptions, reg *prometheus.Registry, log logr.Logger) {
	if o.MetricsBindAddress != "0" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.Handle("/view", viewHandler(g.life.Done(), g.r.Document))
		mux.Handle("/traffic", trafficHandler(g.r.TrafficReports))
		g.spawn(func(ctx context.Context) error { return admin.Serve(ctx, "metrics", o.MetricsBindAddress, mux, log) })
	}
	if o.HealthBindAddress != "0" {
		g.spawn(func(ctx context.Context) error {
			return admin.Serve(ctx, "health", o.HealthBindAddress, healthHandler(g.r), log)
		})
	}
}

// watch starts the watchers: of the site file, if there is one, and of
// the site's CA dir if this gateway holds the site CA (authority).
func (g *runGroup) watch(o ServeOptions, site *sitefile.Site, store state.Store, authority bool, log logr.Logger) {
	if o.SiteFile != "" {
		g.spawn(func(ctx context.Context) error {
			watchSiteFile(ctx, o.SiteFile, site, store, g.r, o.Controller == "", log)
			return nil
		})
	}
	if authority {
		g.spawn(func(ctx context.Context) error {
			watchCA(ctx, site.CADir, site.Name, g.r, log)
			return nil
		})
	}
}

// wait waits for everything the group started and returns the first
// error of any.
func (g *runGroup) wait() error { return g.g.Wait() }

// watchSiteFile reloads the site file when it changes (checked every
// second, or at once on SIGHUP): links are added, removed or replaced
// (links that did not change keep running), and, unless services come from
// a controller, listeners, connectors and routing are swapped. A file that
// no longer loads is reported and the running configuration kept; changes
// to the name, data dir or link access need a restart and are reported.
func watchSiteFile(ctx context.Context, path string, current *sitefile.Site, store state.Store, r *router.Router, servicesFromFile bool, log logr.Logger) {
	// Since the file as loaded at start, not as it is now: an edit made
	// while the gateway started (skiff link create) is applied.
	sitefile.Watch(ctx, path, sitefile.WatchOptions{Since: current.Modified, SIGHUP: true}, log, func(next *sitefile.Site, modified time.Time) {
		if next.Name != current.Name || next.DataDir != current.DataDir || !reflect.DeepEqual(next.LinkAccess, current.LinkAccess) {
			log.Info("site file changed name, dataDir or linkAccess; restart the gateway to apply those", "siteFile", path)
		}
		if !sameLinks(next.Links, current.Links) || linksTouched(next.Links, modified) {
			specs, err := linkSpecs(next, store, log)
			if err != nil {
				log.Error(err, "site file changed but its links are invalid; keeping the running links", "siteFile", path)
				return
			}
			if err := r.SetLinks(specs); err != nil {
				log.Error(err, "apply reloaded links", "siteFile", path)
				return
			}
			log.Info("links reloaded", "siteFile", path, "links", len(specs))
		}
		if servicesFromFile {
			if err := r.SetServices(ctx, servicesOf(next)); err != nil {
				log.Error(err, "apply reloaded site file", "siteFile", path)
				return
			}
			log.Info("site file reloaded", "siteFile", path, "listeners", len(next.Listeners), "connectors", len(next.Connectors))
		}
		current = next
	})
}

// linksTouched reports whether a token file changed no earlier than the
// site file (a token replaced under the same name).
func linksTouched(links []sitefile.Link, since time.Time) bool {
	for _, l := range links {
		if !sitefile.ModTime(l.Token).Before(since) {
			return true
		}
	}
	return false
}

// linkSpecs checks every link token of site.
func linkSpecs(site *sitefile.Site, store state.Store, log logr.Logger) ([]router.LinkSpec, error) {
	var specs []router.LinkSpec
	for _, l := range site.Links {
		spec, err := linkSpec(site, l, store, time.Now(), log)
		if err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func sameLinks(a, b []sitefile.Link) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Token != b[i].Token || a[i].Cost != b[i].Cost || !a[i].Policy.Equal(b[i].Policy) {
			return false
		}
	}
	return true
}

// OpenState returns where a gateway keeps its ledger and link
// certificates: the site file's stateSecret, reached through kube (nil:
// the pod's service account), or else its data dir. Sidecars keep
// nothing (nil).
func OpenState(site *sitefile.Site, role router.Role, kube *state.Kube) (state.Store, error) {
	if role != router.RoleGateway {
		return nil, nil
	}
	if site.StateSecret == "" {
		return state.NewDir(site.DataDir), nil
	}
	if kube == nil {
		k, err := state.InCluster(state.ServiceAccountDir)
		if err != nil {
			return nil, fmt.Errorf("%s: stateSecret %s: %w", site.Path, site.StateSecret, err)
		}
		kube = k
	}
	s, err := state.NewSecret(kube, site.StateSecret)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", site.Path, err)
	}
	// Read it once now: a gateway that cannot reach its state says so
	// at start, not at the first link.
	if _, err := s.List(state.Links); err != nil {
		return nil, err
	}
	return s, nil
}

// Config turns a parsed site file into a router configuration: it loads or
// creates the CA and the gateway's serving certificate, opens the token
// ledger in store (nil: the data dir) and checks every link token.
// Metrics are left for the caller.
func Config(site *sitefile.Site, role router.Role, store state.Store, log logr.Logger) (router.Config, error) {
	cfg := router.Config{Site: site.Name, Role: role, Log: log}
	if site.DataDir != "" {
		if err := datadir.Secure(site.DataDir, log); err != nil {
			return cfg, err
		}
	}
	if store == nil && role == router.RoleGateway {
		store = state.NewDir(site.DataDir)
	}
	if role == router.RoleGateway {
		// Every gateway has the site CA: its key signs the site record
		// and is the key peers hold the site's name for.
		ca, err := pki.LoadOrCreateCA(site.CADir, site.Name)
		if err != nil {
			return cfg, err
		}
		auth := pki.NewAuthority(ca)
		cfg.Authority = auth
		cfg.Certificates = append(cfg.Certificates, router.CertInfo{Kind: "ca", Name: site.Name, NotAfter: ca.Cert.NotAfter})
		if site.LinkAccess != nil {
			hosts := hostsOf(site.LinkAccess.Bind, site.LinkAccess.Advertise)
			issue := func(ca *pki.CA) (tls.Certificate, error) {
				return ca.IssueServer(site.Name, hosts, 365*24*time.Hour)
			}
			if _, err := issue(ca); err != nil {
				return cfg, fmt.Errorf("issue gateway certificate: %w", err)
			}
			ledger := token.NewLedger(store)
			if _, ok := store.(*state.Dir); ok {
				if ledger, err = token.OpenLedger(site.DataDir); err != nil {
					return cfg, err
				}
			}
			cfg.Siblings = site.Siblings
			cfg.SiblingTLS = auth.SiblingTLS(site.Name)
			cfg.LinkListen = site.LinkAccess.Bind
			cfg.ServerTLS = auth.ServerTLS(issue)
			cfg.Admission = &token.Admission{Ledger: ledger, Authority: auth, Site: site.Name}
		}
	}
	specs, err := linkSpecs(site, store, log)
	if err != nil {
		return cfg, err
	}
	cfg.Links = specs
	cfg.Services = servicesOf(site)
	return cfg, nil
}

// servicesOf returns the listeners, connectors, routing, protocols and
// multicast modes of a site file.
func servicesOf(site *sitefile.Site) router.Services {
	var svc router.Services
	for _, l := range site.Listeners {
		svc.Listeners = append(svc.Listeners, router.Listener{Address: l.Address, Host: l.Host, Port: l.Port, AccessLog: l.AccessLog})
	}
	for _, c := range site.Connectors {
		svc.Connectors = append(svc.Connectors, router.Connector{Address: c.Address, Host: c.Host, Port: c.Port})
	}
	svc.Routing = site.Routing
	svc.Protocols = site.Protocols
	svc.Multicast = site.Multicast
	return svc
}

// linkSpec checks a link's token. An expired token is no reason to
// give up: the peer admits a site that redeemed the token before (with
// the link certificate kept in store, or by issuing it again to the same
// key), and says so when it does not.
func linkSpec(site *sitefile.Site, l sitefile.Link, store state.Store, now time.Time, log logr.Logger) (router.LinkSpec, error) {
	tok, err := token.Load(l.Token)
	if err != nil {
		return router.LinkSpec{}, fmt.Errorf("%s:%d: link token: %w", site.Path, l.Line, err)
	}
	if err := tok.VerifyIntegrity(); err != nil {
		return router.LinkSpec{}, fmt.Errorf("%s:%d: link token %s: %w", site.Path, l.Line, l.Token, err)
	}
	certs := linkCertStore{store: store, tokenID: tok.ID}
	if err := tok.Verify(now); err != nil && store != nil {
		if cert, lerr := certs.load(); lerr != nil || cert == nil {
			log.Info("link token expired and no link certificate kept for it; dialling anyway, the peer admits this site only if it redeemed the token before",
				"link", l.Token, "peerSite", tok.Site, "error", err.Error())
		}
	}
	tlsCfg, err := tok.ClientTLS()
	if err != nil {
		return router.LinkSpec{}, fmt.Errorf("%s:%d: link token %s: %w", site.Path, l.Line, l.Token, err)
	}
	peerKeys, err := caKeyIDs(tok)
	if err != nil {
		return router.LinkSpec{}, fmt.Errorf("%s:%d: link token %s: %w", site.Path, l.Line, l.Token, err)
	}
	spec := router.LinkSpec{
		Name:     l.Token,
		Endpoint: tok.Endpoint,
		TLS:      tlsCfg,
		Cost:     l.Cost,
		PeerSite: tok.Site,
		PeerKey:  peerKeys[0],
		PeerKeys: peerKeys[1:],
		Policy:   l.Policy,
	}
	if store != nil {
		spec.LinkCert, spec.SaveLinkCert = certs.load, certs.save
		spec.PeerCA, spec.SavePeerCA = certs.loadCA, certs.saveCA
	}
	return spec, nil
}

// caKeyIDs returns the keys of the token's CA, the issuing site's key,
// in the form site records carry it: one, or, for a token issued during a
// CA rotation, the current key and the previous one.
func caKeyIDs(tok *token.Token) ([]string, error) {
	cas, err := pki.ParseCertificates([]byte(tok.CA), 4)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	ids := make([]string, 0, len(cas))
	for _, ca := range cas {
		pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("ca key is %T, not ECDSA", ca.PublicKey)
		}
		id, err := netview.KeyID(pub)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// hostsOf returns the hosts of host:port addresses, for certificate SANs.
func hostsOf(addrs ...string) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil || h == "" || seen[h] {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}

// TokenOptions are the flags of `skiff-router token issue`
// ([datadir.TokenOptions]).
type TokenOptions = datadir.TokenOptions

// IssueToken runs `skiff-router token issue`: it writes a token of the
// site in o.SiteFile to o.Out and records it in the site's ledger
// ([datadir.IssueToken], which `skiff token create --site-file` runs as
// well).
func IssueToken(o TokenOptions, now time.Time) (*token.Token, error) {
	return datadir.IssueToken(o, now)
}
