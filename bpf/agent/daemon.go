package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/skiff-io/skiff/bpf"
	"github.com/skiff-io/skiff/sidecar/shared/admin"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// DaemonOptions are the flags of `skiff-node-agent daemon`. The fields
// after CleanupOnExit are not flags: tests set them.
type DaemonOptions struct {
	NodeName               string
	Site                   string
	Namespace              string
	Controller             string
	CredentialsDir         string
	CgroupRoot             string
	BPFFS                  string
	PinDir                 string
	MetricsBindAddress     string
	HealthProbeBindAddress string
	CleanupOnExit          bool
	// OwnerDaemonSet is namespace/name of the agent's DaemonSet: when the
	// agent stops because it is being deleted (helm uninstall), it cleans
	// up as with CleanupOnExit; a rolling update keeps the pins.
	OwnerDaemonSet string

	// RESTConfig reaches the apiserver (default: ctrl.GetConfig()).
	RESTConfig *rest.Config
	// SidecarPort is where redirected connections go (default
	// contract.SidecarOutboundPort).
	SidecarPort uint16
}

// AddFlags registers the daemon's flags.
func (o *DaemonOptions) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "the node whose pods the agent redirects (default $NODE_NAME; required)")
	fs.StringVar(&o.Site, "site", "", "the site whose injected pods the agent redirects, with that site's services: names its pin dir, its self-check address and its xDS node ID node~<site>~<node> (required)")
	fs.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the site's namespace, the only one whose pods the agent redirects (its injector injects no other; default $POD_NAMESPACE; required)")
	fs.StringVar(&o.Controller, "controller", "", "host:port of the site controller's xDS server, which the services map follows; empty leaves the map to the services command")
	fs.StringVar(&o.CredentialsDir, "credentials-dir", "", "directory with token.yaml, a member token of the site (the Secret skiff-sidecar), the agent's TLS credential for the controller; empty dials in plaintext, which only a controller's loopback --xds-plaintext-bind-address accepts")
	fs.StringVar(&o.CgroupRoot, "cgroup-root", "/sys/fs/cgroup", "the host's cgroup v2 mount, or a directory whose unified/ is (hybrid hosts)")
	fs.StringVar(&o.BPFFS, "bpffs", "/sys/fs/bpf", "the host's bpf filesystem")
	fs.StringVar(&o.PinDir, "pin-dir", "", "directory for the site's pinned maps and links (default <bpffs>/skiff/sites/<site>; with it, the agent takes nothing over from the single-site layout of earlier versions)")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", "127.0.0.1:"+strconv.Itoa(contract.MetricsPort), "address of the Prometheus /metrics endpoint; loopback by default, :"+strconv.Itoa(contract.MetricsPort)+" for every interface; 0 disables it")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(contract.HealthPort), "address of /healthz and /readyz; loopback by default, :"+strconv.Itoa(contract.HealthPort)+" for every interface (kubelet probes the pod IP); 0 disables it")
	fs.StringVar(&o.OwnerDaemonSet, "owner-daemonset", "", "namespace/name of the agent's DaemonSet: when the agent stops and the DaemonSet is gone or being deleted (uninstall), clean up as --cleanup-on-exit does; a rolling update keeps redirecting")
	fs.BoolVar(&o.CleanupOnExit, "cleanup-on-exit", false, "on exit, detach the site's pods and remove its pinned maps, as the uninstall command does: the site's redirection stops on the node (other sites' stays). Without it the pins keep redirecting while no agent runs")
}

// pinDir is --pin-dir, or the site's directory on --bpffs.
func (o *DaemonOptions) pinDir() string {
	if o.PinDir != "" {
		return o.PinDir
	}
	dir, _ := bpf.SitePinDir(o.BPFFS, o.Site) // Validate checked the site
	return dir
}

// legacyPinDir is where agents before per-site pin dirs pinned everything,
// whose attachments of this site's pods this agent takes over; "" with
// --pin-dir (the layout is then the operator's).
func (o *DaemonOptions) legacyPinDir() string {
	if o.PinDir != "" {
		return ""
	}
	return bpf.LegacyPinDir(o.BPFFS)
}

// Validate reports every bad option at once.
func (o *DaemonOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.NodeName == "" {
		bad("--node-name is required (or $NODE_NAME)")
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(o.NodeName) {
			bad("--node-name %q: %s", o.NodeName, msg)
		}
	}
	if o.Controller != "" {
		if _, err := admin.SplitPort(o.Controller); err != nil {
			bad("--controller %q: %w", o.Controller, err)
		}
	} else if o.CredentialsDir != "" {
		bad("--credentials-dir needs --controller")
	}
	if o.Site == "" {
		bad("--site is required")
	} else if err := names.CheckSite(o.Site); err != nil {
		bad("--site: %w", err)
	}
	if o.Namespace == "" {
		bad("--namespace is required (or $POD_NAMESPACE)")
	} else {
		for _, msg := range validation.IsDNS1123Label(o.Namespace) {
			bad("--namespace %q: %s", o.Namespace, msg)
		}
	}
	for _, d := range []struct{ flag, dir string }{{"--cgroup-root", o.CgroupRoot}, {"--bpffs", o.BPFFS}} {
		if !filepath.IsAbs(d.dir) {
			bad("%s %q: must be an absolute path", d.flag, d.dir)
		}
	}
	if o.PinDir != "" && !filepath.IsAbs(o.PinDir) {
		bad("--pin-dir %q: must be an absolute path", o.PinDir)
	}
	for _, a := range []struct{ flag, addr string }{
		{"--metrics-bind-address", o.MetricsBindAddress},
		{"--health-probe-bind-address", o.HealthProbeBindAddress},
	} {
		if a.addr == "0" {
			continue
		}
		if _, err := admin.SplitPort(a.addr); err != nil {
			bad("%s %q: %w (or 0 to disable)", a.flag, a.addr, err)
		}
	}
	return errors.Join(errs...)
}

// sweepInterval is how often the agent compares the pinned attachments
// with the pods, besides at start; pods that leave are detached at once,
// so this only catches what a missed event would leave behind.
const sweepInterval = 10 * time.Minute

// RunDaemon runs the node agent's Kubernetes mode until ctx ends: it loads
// the site's redirector (taking over what an earlier agent of the site
// pinned), keeps the site's injected pods on the node attached, and the
// services map filled from the site's controller; the agents of other
// sites on the node do the same for theirs, each with its own pin dir.
// When ctx ends it stops without detaching anything (unless
// CleanupOnExit), so redirection holds until the next agent starts.
func RunDaemon(ctx context.Context, o DaemonOptions, log logr.Logger) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	cfg := o.RESTConfig
	if cfg == nil {
		if cfg, err = ctrl.GetConfig(); err != nil {
			return fmt.Errorf("kubernetes client config: %w", err)
		}
	}
	r, err := bpf.Load(bpf.Config{Site: o.Site, PinDir: o.pinDir(), SidecarPort: o.SidecarPort})
	if err != nil {
		return err
	}
	defer func() {
		r.Close()
		if !o.CleanupOnExit && ownerGone(cfg, o.OwnerDaemonSet, log) {
			o.CleanupOnExit = true
			log.Info("the agent's DaemonSet is being deleted: cleaning up", "daemonSet", o.OwnerDaemonSet)
		}
		if !o.CleanupOnExit {
			log.Info("stopped; the pinned programs go on redirecting", "pinDir", o.pinDir())
			return
		}
		if uerr := bpf.Uninstall(o.pinDir()); uerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up on exit: %w", uerr))
			return
		}
		log.Info("stopped and cleaned up: the site's pods detached, its maps removed", "pinDir", o.pinDir())
	}()
	rc := r.Config()
	log.Info("redirector loaded", "site", o.Site, "namespace", o.Namespace, "pinDir", rc.PinDir, "sidecarPort", rc.SidecarPort, "node", o.NodeName, "cgroupRoot", o.CgroupRoot)

	reg := prometheus.NewRegistry()
	d := &daemon{o: o, r: r, log: log, m: newMetrics(reg, r, log), attached: map[podKey]attachment{}, waiting: map[podKey]*waiting{}, refused: map[podKey]string{}}
	if svcs, err := r.Services(); err == nil {
		d.services = svcs // what the last agent left: the map keeps it until the controller answers
		d.m.services.Set(float64(len(svcs)))
	}
	mgr, err := d.newManager(cfg)
	if err != nil {
		return err
	}
	if o.Controller != "" {
		c, err := d.newXDSClient(reg)
		if err != nil {
			return err
		}
		if err := mgr.Add(manager.RunnableFunc(c.Run)); err != nil {
			return fmt.Errorf("add xds client: %w", err)
		}
	} else if err := d.armProbe(); err != nil {
		return err // without a controller the services map is the operator's
	}
	if o.MetricsBindAddress != "0" {
		if err := mgr.Add(metricsServer(o.MetricsBindAddress, reg, log)); err != nil {
			return fmt.Errorf("add metrics server: %w", err)
		}
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

// newManager builds the controller-runtime manager: a cache of the pods
// of the site's namespace on this node only, the pod controller, the
// sweeper, health probes. No leader election: every node runs its own
// agent.
func (d *daemon) newManager(cfg *rest.Config) (manager.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("build scheme: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Logger: d.log,
		// The agent serves its own registry (with controller-runtime's)
		// on --metrics-bind-address.
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: d.o.HealthProbeBindAddress,
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Pod{}: {
					Namespaces: map[string]cache.Config{d.o.Namespace: {}},
					Field:      fields.OneTermEqualSelector("spec.nodeName", d.o.NodeName),
				},
			},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		// One agent per process in production; tests run several in turn.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("build manager: %w", err)
	}
	d.pods = mgr.GetClient()
	d.recorder = mgr.GetEventRecorder("skiff-node-agent")
	err = ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Pod{}).
		Named("node-agent").
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(d)
	if err != nil {
		return nil, fmt.Errorf("build pod controller: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return d.runSweeper(ctx, mgr.GetCache()) })); err != nil {
		return nil, fmt.Errorf("add sweeper: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	// Ready once the redirector is loaded (it is, or the manager would not
	// run) and the first pod list has been synced and swept.
	if err := mgr.AddReadyzCheck("pods", func(*http.Request) error {
		if !d.ready.Load() {
			return errors.New("the pods of the node are not synced yet")
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("add readiness check: %w", err)
	}
	return mgr, nil
}

// runSweeper waits for the first pod list, sweeps the pinned attachments
// against it (ready after that), then sweeps every sweepInterval.
func (d *daemon) runSweeper(ctx context.Context, c cache.Cache) error {
	if !c.WaitForCacheSync(ctx) {
		return nil // ctx ended
	}
	if err := d.sweep(ctx); err != nil {
		// Not fatal: what could not be detached now is tried again.
		d.log.Error(err, "sweep of pinned attachments")
	}
	d.ready.Store(true)
	d.log.Info("pods synced; ready")
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := d.sweep(ctx); err != nil {
				d.log.Error(err, "sweep of pinned attachments")
			}
		}
	}
}

// ownerGone reports whether the DaemonSet ns/name is gone or being deleted.
// Uninstalling the chart also deletes the agent's RBAC and service account,
// often before the agent stops, so a refusal (403/401) counts as gone too;
// an unreachable apiserver means "keep the pins".
func ownerGone(cfg *rest.Config, ref string, log logr.Logger) bool {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || name == "" {
		return false
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		log.Error(err, "check the agent's DaemonSet; keeping the pins")
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var ds appsv1.DaemonSet
	err = c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ds)
	switch {
	case apierrors.IsNotFound(err), apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return true
	case err != nil:
		log.Error(err, "check the agent's DaemonSet; keeping the pins")
		return false
	}
	return ds.DeletionTimestamp != nil
}
