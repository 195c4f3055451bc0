// Package app assembles skiff-controller from its options: a source of the
// site's own services (a site file, or the Kubernetes API), the gateway's
// view of the network, and the xDS server that serves the joined table,
// with health and metrics endpoints.
//
// The xDS port serves TLS 1.3 only, with a certificate issued from the
// site CA (the site file's caDir, or the Secret skiff-site-ca) for
// xdsclient.ServerName(site), and requires a client certificate of that
// CA; --xds-plaintext-bind-address adds a plaintext listener, on loopback
// only, for proxyless gRPC clients without one.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/sidecar/shared/admin"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
	"github.com/skiff-io/skiff/xds/console"
	"github.com/skiff-io/skiff/xds/federation"
	"github.com/skiff-io/skiff/xds/server"
	"github.com/skiff-io/skiff/xds/source/file"
)

// Options are skiff-controller's flags.
type Options struct {
	// SiteFile selects the site-file source (a Linux site).
	SiteFile string
	// Kube selects the Kubernetes source, scoped to Namespace.
	Kube      bool
	Site      string
	Namespace string
	// GatewayService names the gateway's Service (Kubernetes).
	GatewayService string
	// GatewayAdmin is the gateway's admin address (host:port), where it
	// serves /view; default 127.0.0.1:15090 with a site file. In
	// Kubernetes the controller follows every ready gateway pod itself
	// unless it is set.
	GatewayAdmin string
	// LinkAdvertise is the link endpoint (host:port) other sites dial,
	// written into the tokens this site issues (Kubernetes); default the
	// gateway Service's address.
	LinkAdvertise string

	// GatewaySiteDir, GatewayDataDir and LinkBind override what the
	// controller writes into the gateway's site file (tests; not flags).
	GatewaySiteDir, GatewayDataDir, LinkBind string
	// KubeConfig is the REST config of the Kubernetes source (tests; not a
	// flag); nil: the cluster's, or $KUBECONFIG's.
	KubeConfig *rest.Config

	XDSBindAddress string
	// XDSPlaintextBindAddress, when set, serves the same xDS in
	// plaintext, for proxyless gRPC clients without a certificate; it
	// must be a loopback address.
	XDSPlaintextBindAddress string
	MetricsBindAddress      string // "0" disables
	HealthBindAddress       string // "0" disables
	// Console serves the read-only console (package xds/console) at
	// /console/ on MetricsBindAddress.
	Console bool
}

// AddFlags registers the options on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.SiteFile, "site-file", "", "site file (YAML) of a Linux site; see docs/site-file.md")
	fs.BoolVar(&o.Kube, "kube", false, "read the site from the Kubernetes API (in-cluster or $KUBECONFIG)")
	fs.StringVar(&o.Site, "site", "", "site name (Kubernetes; a site file names its site)")
	fs.StringVar(&o.Namespace, "namespace", "", "the site's namespace (Kubernetes)")
	fs.StringVar(&o.GatewayService, "gateway-service", "skiff-gateway", "the gateway's Service (Kubernetes)")
	fs.StringVar(&o.GatewayAdmin, "gateway-admin", "", "the gateway's admin address (host:port) serving /view; default 127.0.0.1:"+strconv.Itoa(contract.MetricsPort)+" with --site-file, every ready gateway pod with --kube")
	fs.StringVar(&o.LinkAdvertise, "link-advertise", "", "link endpoint (host:port) other sites dial, written into tokens (Kubernetes); default the gateway Service's load-balancer address, else its DNS name <service>.<namespace>.svc, and link port")
	fs.StringVar(&o.XDSBindAddress, "xds-bind-address", ":"+strconv.Itoa(contract.XDSPort), "address of the xDS (gRPC ADS) server: TLS 1.3, clients must present a certificate of the site CA (docs/xds.md)")
	fs.StringVar(&o.XDSPlaintextBindAddress, "xds-plaintext-bind-address", "", "also serve xDS in plaintext, without client authentication, on this loopback address (such as 127.0.0.1:15011), for proxyless gRPC clients on this host that have no certificate; off by default")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", "127.0.0.1:"+strconv.Itoa(contract.MetricsPort), "address of the Prometheus /metrics endpoint and /status, which describe the site (docs/install.md); loopback by default, :"+strconv.Itoa(contract.MetricsPort)+" for every interface; 0 disables it")
	fs.BoolVar(&o.Console, "console", true, "serve the read-only web console at /console/ on the metrics address (docs/cli.md#the-console); --console=false turns it off")
	fs.StringVar(&o.HealthBindAddress, "health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(contract.HealthPort), "address of /healthz and /readyz; loopback by default, :"+strconv.Itoa(contract.HealthPort)+" for every interface (kubelet probes the pod IP); 0 disables it")
}

// Validate reports missing or malformed options.
func (o *Options) Validate() error {
	var errs []error
	switch {
	case o.SiteFile == "" && !o.Kube:
		errs = append(errs, errors.New("one of --site-file or --kube is required"))
	case o.SiteFile != "" && o.Kube:
		errs = append(errs, errors.New("--site-file and --kube exclude each other"))
	case o.Kube && (o.Site == "" || o.Namespace == ""):
		errs = append(errs, errors.New("--kube needs --site and --namespace"))
	}
	for name, v := range map[string]string{"--xds-bind-address": o.XDSBindAddress, "--metrics-bind-address": o.MetricsBindAddress, "--health-probe-bind-address": o.HealthBindAddress, "--gateway-admin": o.GatewayAdmin, "--link-advertise": o.LinkAdvertise} {
		if v == "" && (name == "--gateway-admin" || name == "--link-advertise") || v == "0" && name != "--xds-bind-address" {
			continue
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, v, err))
		}
	}
	if o.XDSPlaintextBindAddress != "" {
		if err := checkLoopback(o.XDSPlaintextBindAddress); err != nil {
			errs = append(errs, fmt.Errorf("--xds-plaintext-bind-address %q: %w", o.XDSPlaintextBindAddress, err))
		}
	}
	return errors.Join(errs...)
}

// Controller joins the site's services with the gateway's view and feeds
// the result to the xDS server.
type Controller struct {
	site string
	srv  *server.Server
	log  logr.Logger

	mu    sync.Mutex
	local []model.Service
	doc   *netview.Document
	table *model.Table
	hash  string // table.Hash(), computed once per table
	// onView, if set, also receives every view (the Kubernetes source
	// keeps proxy Services in line with it).
	onView func(netview.Document)

	haveLocal atomic.Bool
}

// NewController returns a controller of site that serves through srv.
func NewController(site string, srv *server.Server, log logr.Logger) *Controller {
	return &Controller{site: site, srv: srv, log: log}
}

// SetLocal replaces the site's own services.
func (c *Controller) SetLocal(services []model.Service) {
	c.mu.Lock()
	c.local = services
	c.mu.Unlock()
	c.haveLocal.Store(true)
	c.rebuild()
}

// SetView replaces the gateway's view of the network.
func (c *Controller) SetView(d netview.Document) {
	c.mu.Lock()
	c.doc = &d
	c.mu.Unlock()
	if c.onView != nil {
		c.onView(d)
	}
	c.rebuild()
}

// View returns the last view of the network, or nil.
func (c *Controller) View() *netview.Document {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doc
}

// Table returns the table served now (nil before the first).
func (c *Controller) Table() *model.Table {
	t, _ := c.Current()
	return t
}

// Current returns the table served now and its content hash.
func (c *Controller) Current() (*model.Table, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.table, c.hash
}

// rebuild builds the table and hands it to the server, under c.mu from
// start to end: a new view and new local services arrive on goroutines
// of their own, and the two rebuilds must reach the server in the order
// they built their tables, or it would serve the older one until the
// next change.
func (c *Controller) rebuild() {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := federation.Build(c.site, c.local, c.doc)
	if err := t.Validate(); err != nil {
		c.log.Error(err, "service table is invalid; keeping the last one")
		return
	}
	hash := t.Hash()
	if c.table != nil && c.hash == hash {
		return
	}
	c.table, c.hash = t, hash
	c.log.V(1).Info("service table changed", "services", len(t.Services), "sites", len(t.Sites))
	c.srv.Update(t)
}

// Run runs the controller until ctx ends, or until one of its parts
// fails; the first failure stops the others. It returns once everything
// it started has stopped: the xDS server (GracefulStop), the admin
// endpoints, the site-file watch or the Kubernetes manager, the status
// writer, the CA watch and the view watcher.
func Run(ctx context.Context, o Options, log logr.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	reg := newRegistry()
	srv := server.New(server.Options{Log: log, Registry: reg})

	// Nothing runs until everything is built: a start that fails here
	// has nothing to stop.
	src, err := newSource(ctx, o, srv, log)
	if err != nil {
		return err
	}
	c := src.controller
	w := &federation.ViewWatcher{Addrs: src.gatewayAddrs, OnChange: c.SetView, Log: log.WithName("view")}
	listeners, err := listenXDS(o, src.xdsTLS, log)
	if err != nil {
		return err
	}
	log.Info("serving xDS", "bind", listeners[0].Addr().String(), "site", c.site, "serverName", xdsclient.ServerName(c.site))

	for _, f := range src.parts {
		g.Go(func() error { return f(ctx) })
	}
	g.Go(func() error {
		w.Run(ctx) // returns once its poll loops have stopped
		return nil
	})
	g.Go(func() error { return srv.ServeListeners(ctx, listeners...) })
	serveAdmin(ctx, g, o, reg, srv, src, log)
	return g.Wait()
}

// newRegistry returns the registry of the controller's metrics, with the
// Go runtime's and the process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// siteSource is the source of the site's services, built and not yet
// running: a site file or the Kubernetes API.
type siteSource struct {
	controller *Controller
	// gatewayAddrs finds the admin addresses of the gateway's replicas.
	gatewayAddrs func() ([]string, error)
	// xdsTLS is the xDS server's TLS, from the site CA.
	xdsTLS *serverTLS
	parts  []func(context.Context) error // the source's, which feed controller
}

// newSource builds the source the options select, and the controller it
// feeds; ctx bounds the Kubernetes source's gatewayAddrs reads.
func newSource(ctx context.Context, o Options, srv *server.Server, log logr.Logger) (*siteSource, error) {
	if o.SiteFile != "" {
		return newFileSource(o, srv, log)
	}
	xdsTLS := newServerTLS(o.Site, certHosts(o), log.WithName("xds-tls"))
	k, err := newKube(ctx, o, srv, xdsTLS, log)
	if err != nil {
		return nil, err
	}
	return &siteSource{controller: k.controller, gatewayAddrs: k.gatewayAddrs, xdsTLS: xdsTLS, parts: k.parts}, nil
}

// newFileSource builds the site-file source: the site's services from
// the site file, which it watches, the xDS server's TLS from the site's
// CA, and the gateway's admin address (--gateway-admin, default the
// local gateway's).
func newFileSource(o Options, srv *server.Server, log logr.Logger) (*siteSource, error) {
	site, err := sitefile.Load(o.SiteFile)
	if err != nil {
		return nil, err
	}
	local, err := file.Services(site)
	if err != nil {
		return nil, err
	}
	// The site's CA, as its gateway keeps it (created by whichever
	// starts first).
	ca, err := pki.LoadOrCreateCA(site.CADir, site.Name)
	if err != nil {
		return nil, err
	}
	xdsTLS := newServerTLS(site.Name, certHosts(o), log.WithName("xds-tls"))
	if _, err := xdsTLS.setCA(ca); err != nil {
		return nil, err
	}
	c := NewController(site.Name, srv, log)
	c.SetLocal(local)
	watch := func(ctx context.Context) error {
		file.Watch(ctx, o.SiteFile, log, c.SetLocal)
		return nil
	}
	admin := o.GatewayAdmin
	if admin == "" {
		admin = net.JoinHostPort("127.0.0.1", strconv.Itoa(contract.MetricsPort))
	}
	gatewayAddrs := func() ([]string, error) { return []string{admin}, nil }
	return &siteSource{controller: c, gatewayAddrs: gatewayAddrs, xdsTLS: xdsTLS, parts: []func(context.Context) error{watch}}, nil
}

// listenXDS opens the xDS listeners: TLS on --xds-bind-address, and
// plaintext on --xds-plaintext-bind-address when set. On failure none is
// left open.
func listenXDS(o Options, xdsTLS *serverTLS, log logr.Logger) ([]server.Listener, error) {
	lis, err := net.Listen("tcp", o.XDSBindAddress)
	if err != nil {
		return nil, fmt.Errorf("listen for xDS on %s: %w", o.XDSBindAddress, err)
	}
	listeners := []server.Listener{{Listener: lis, TLS: xdsTLS.config()}}
	if o.XDSPlaintextBindAddress != "" {
		plain, err := net.Listen("tcp", o.XDSPlaintextBindAddress)
		if err != nil {
			lis.Close()
			return nil, fmt.Errorf("listen for plaintext xDS on %s: %w", o.XDSPlaintextBindAddress, err)
		}
		log.Info("serving xDS in plaintext on loopback too: local clients are not authenticated", "bind", plain.Addr().String())
		listeners = append(listeners, server.Listener{Listener: plain})
	}
	return listeners, nil
}

// consoleInput is what the console draws: the table served, the view it
// came from, and the xDS clients (those refusing their table named, and
// the redirect states sidecars report).
func consoleInput(c *Controller, srv *server.Server) console.Input {
	in := console.Input{Site: c.site, Table: c.Table(), View: c.View(), Redirects: map[string]model.Redirect{}}
	for _, n := range srv.Status() {
		in.Clients.Connected++
		if len(n.Rejected) > 0 {
			in.Clients.Rejecting++
			in.Rejections = append(in.Rejections, n.ID)
		}
		if n.Redirect != "" {
			in.Redirects[n.ID] = n.Redirect
		}
	}
	return in
}

// serveAdmin starts in g the admin endpoints the options do not disable:
// /metrics and /status, and /healthz and /readyz. They stop when ctx
// ends.
func serveAdmin(ctx context.Context, g *errgroup.Group, o Options, reg *prometheus.Registry, srv *server.Server, src *siteSource, log logr.Logger) {
	c := src.controller
	if o.MetricsBindAddress != "0" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.Handle("/status", StatusHandler(c, srv))
		if o.Console {
			traffic := func(ctx context.Context) (console.Reading, error) {
				addrs, err := src.gatewayAddrs()
				if err != nil {
					return console.Reading{}, err
				}
				return console.GatewayTraffic(ctx, http.DefaultClient, addrs)
			}
			feed := console.NewFeed(func() console.Input { return consoleInput(c, srv) }, traffic, log.WithName("console"))
			g.Go(func() error { return feed.Run(ctx) })
			mux.Handle("/console/", feed.Handler("/console/"))
		}
		g.Go(func() error { return admin.Serve(ctx, "metrics", o.MetricsBindAddress, mux, log) })
	}
	if o.HealthBindAddress != "0" {
		ready := func() bool { return c.haveLocal.Load() && c.Table() != nil && src.xdsTLS.ready() }
		g.Go(func() error {
			return admin.Serve(ctx, "health", o.HealthBindAddress, admin.HealthHandler(ready, "not ready: no service table yet, or the site CA not known yet"), log)
		})
	}
}
