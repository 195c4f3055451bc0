package app

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/xds/server"
	"github.com/skiff-io/skiff/xds/source/kube"
)

// kubeSource is the Kubernetes source, built and not yet running.
type kubeSource struct {
	controller *Controller
	// gatewayAddrs finds the admin addresses of the gateway's replicas
	// (--gateway-admin alone when given).
	gatewayAddrs func() ([]string, error)
	// parts run until their context ends: the manager scoped to the
	// site's namespace, whose reconcilers feed the controller; the status
	// writer; the watch of the site CA that xdsTLS serves with.
	parts []func(context.Context) error
}

// newKube builds the Kubernetes source; ctx bounds gatewayAddrs' reads.
func newKube(ctx context.Context, o Options, srv *server.Server, xdsTLS *serverTLS, log logr.Logger) (*kubeSource, error) {
	cfg := o.KubeConfig
	if cfg == nil {
		var err error
		if cfg, err = ctrl.GetConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes client config: %w", err)
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Logger:                 log.WithName("kube"),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Everything the controller reads lives in the site's namespace;
		// its Role grants nothing else.
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{o.Namespace: {}}},
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes manager: %w", err)
	}
	c := NewController(o.Site, srv, log)
	src := &kube.Source{
		Client:         mgr.GetClient(),
		Namespace:      o.Namespace,
		GatewayService: o.GatewayService,
		OnLocal:        c.SetLocal,
		Recorder:       mgr.GetEventRecorder("skiff-controller"),
		Log:            log.WithName("site"),
	}
	if err := src.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	id := &kube.Identity{
		Client:         mgr.GetClient(),
		Reader:         mgr.GetAPIReader(),
		Namespace:      o.Namespace,
		Site:           o.Site,
		GatewayService: o.GatewayService,
		LinkAdvertise:  o.LinkAdvertise,
		GatewaySiteDir: o.GatewaySiteDir,
		GatewayDataDir: o.GatewayDataDir,
		LinkBind:       o.LinkBind,
		Recorder:       mgr.GetEventRecorder("skiff-controller"),
		Log:            log.WithName("identity"),
	}
	if err := id.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	c.onView = src.SetView
	addrs := func() ([]string, error) {
		if o.GatewayAdmin != "" {
			return []string{o.GatewayAdmin}, nil
		}
		return src.GatewayAdminAddrs(ctx)
	}
	k := &kubeSource{controller: c, gatewayAddrs: addrs}
	k.parts = []func(context.Context) error{
		func(ctx context.Context) error {
			if err := mgr.Start(ctx); err != nil {
				return fmt.Errorf("kubernetes manager: %w", err)
			}
			return nil
		},
		func(ctx context.Context) error {
			writeStatus(ctx, c, mgr.GetAPIReader(), mgr.GetClient(), o.Namespace, o.GatewayService, log)
			return nil
		},
		func(ctx context.Context) error {
			watchCA(ctx, mgr.GetAPIReader(), o.Namespace, xdsTLS, log.WithName("xds-tls"))
			return nil
		},
	}
	return k, nil
}

// writeStatus keeps the status ConfigMap in line with the served table,
// checking every two seconds and writing only on a change, so a busy
// network costs etcd one small object and few writes.
func writeStatus(ctx context.Context, c *Controller, r client.Reader, cl client.Writer, namespace, gatewayService string, log logr.Logger) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tb, hash := c.Current()
		if tb == nil || hash == last {
			continue
		}
		owner := kube.GatewayOwner(ctx, r, namespace, gatewayService)
		if owner == nil {
			continue // no gateway Service: not installed yet, or being uninstalled
		}
		if err := kube.WriteStatus(ctx, r, cl, namespace, owner, model.NewSiteStatus(tb, hash)); err != nil {
			if ctx.Err() == nil {
				log.Error(err, "write site status")
			}
			continue
		}
		last = hash
	}
}
