package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/skiff-io/skiff/sidecar/shared/admin"
	"github.com/skiff-io/skiff/webhook/certs"
	"github.com/skiff-io/skiff/webhook/inject"
	"github.com/skiff-io/skiff/webhook/server"
)

// certSource serves the webhook's certificate and keeps it current.
type certSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	manager.Runnable
}

// Run serves the injector until ctx ends.
func Run(ctx context.Context, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	lg := log.FromContext(ctx).WithName("injector")
	ctx = log.IntoContext(ctx, lg)
	cfg, err := restConfig(o)
	if err != nil {
		return err
	}
	native, serverVersion, err := nativeSidecar(o.NativeSidecar, cfg)
	if err != nil {
		return err
	}
	icfg, err := o.injectConfig(native)
	if err != nil {
		return err
	}
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	src, kick, err := newCertSource(ctx, o, cfg, scheme)
	if err != nil {
		return err
	}
	mgr, err := newManager(o, cfg, scheme, src, lg)
	if err != nil {
		return err
	}
	if err := addCertSource(ctx, mgr, src, kick); err != nil {
		return err
	}
	if err := addWebhook(mgr, icfg, scheme); err != nil {
		return err
	}

	lg.Info("starting injector", "site", o.Site, "namespace", o.Namespace, "webhook", o.WebhookBindAddress+server.Path,
		"selfManagedCerts", o.SelfManagedCerts(), "nativeSidecar", native, "apiserverVersion", serverVersion,
		"redirectMode", o.RedirectMode, "sidecarImage", o.SidecarImage)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

// restConfig returns the Kubernetes client configuration: o.RESTConfig,
// else the cluster's or $KUBECONFIG's.
func restConfig(o Options) (*rest.Config, error) {
	if o.RESTConfig != nil {
		return o.RESTConfig, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	return cfg, nil
}

// newScheme returns the scheme of the injector's clients: the built-in
// Kubernetes types.
func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("build scheme: %w", err)
	}
	return scheme, nil
}

// newManager builds the manager that runs the injector: its webhook
// server serves src's certificate on o.WebhookBindAddress, with its
// metrics and health endpoints, and a cache of the certificate Secret
// alone.
func newManager(o Options, cfg *rest.Config, scheme *runtime.Scheme, src certSource, lg logr.Logger) (manager.Manager, error) {
	host, _, _ := net.SplitHostPort(o.WebhookBindAddress) // checked by Validate
	port, _ := admin.SplitPort(o.WebhookBindAddress)
	whServer := webhook.NewServer(webhook.Options{
		Host: host,
		Port: port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.GetCertificate = src.GetCertificate
			c.MinVersion = tls.VersionTLS12
		}},
	})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 lg,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress: o.HealthProbeBindAddress,
		WebhookServer:          whServer,
		// The injector reads one Secret (its certificate) in its namespace,
		// nothing else.
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}: {Field: fields.OneTermEqualSelector("metadata.name", o.CertSecret)},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build manager: %w", err)
	}
	return mgr, nil
}

// addCertSource adds src to mgr's runnables and, when kick is not nil,
// kicks it on every change of the certificate Secret in mgr's cache.
func addCertSource(ctx context.Context, mgr manager.Manager, src certSource, kick func()) error {
	if err := mgr.Add(src); err != nil {
		return fmt.Errorf("add certificate source: %w", err)
	}
	if kick == nil {
		return nil
	}
	// Another replica's rotation reaches this one at once, not only at
	// the next periodic check.
	inf, err := mgr.GetCache().GetInformer(ctx, &corev1.Secret{}, cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("watch certificate secret: %w", err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(_, _ any) { kick() },
		DeleteFunc: func(any) { kick() },
	}); err != nil {
		return fmt.Errorf("watch certificate secret: %w", err)
	}
	return nil
}

// addWebhook registers the injection handler on mgr's webhook server,
// and the health and readiness checks.
func addWebhook(mgr manager.Manager, icfg inject.Config, scheme *runtime.Scheme) error {
	handler := server.NewHandler(icfg, scheme, mgr.GetEventRecorder("skiff-injector"))
	// GetWebhookServer (not newManager's whServer) adds the server to the manager's runnables.
	mgr.GetWebhookServer().Register(server.Path, &webhook.Admission{Handler: handler})
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	// Ready once the webhook server completes a TLS handshake: it listens
	// and has a certificate.
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return fmt.Errorf("add readiness check: %w", err)
	}
	return nil
}

// newCertSource loads the serving certificate before anything listens, so a
// replica that cannot get one fails at once, loudly. kick, when not nil,
// asks the source to re-check its Secret.
func newCertSource(ctx context.Context, o Options, cfg *rest.Config, scheme *runtime.Scheme) (certSource, func(), error) {
	if !o.SelfManagedCerts() {
		d, err := certs.NewDirSource(o.CertDir)
		return d, nil, err
	}
	// A direct client: the certificate exists before the manager's cache
	// starts, and a lost create race needs a fresh read.
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, fmt.Errorf("build client: %w", err)
	}
	spec := certs.Spec{
		DNSNames:     certs.ServiceDNSNames(o.ServiceName, o.Namespace),
		CALifetime:   orDefault(o.CALifetime, certs.DefaultCALifetime),
		LeafLifetime: orDefault(o.LeafLifetime, certs.DefaultLeafLifetime),
		PublishDelay: orDefault(o.CAPublishDelay, certs.DefaultPublishDelay),
	}
	for _, san := range o.ExtraSANs {
		if ip := net.ParseIP(san); ip != nil {
			spec.IPs = append(spec.IPs, ip)
		} else {
			spec.DNSNames = append(spec.DNSNames, san)
		}
	}
	m, err := certs.NewSecretManager(certs.SecretOptions{
		Namespace:         o.Namespace,
		SecretName:        o.CertSecret,
		WebhookConfigName: o.WebhookConfigName,
		Spec:              spec,
		CheckInterval:     o.CertCheckInterval,
		Reader:            c,
		Writer:            c,
		Labels:            map[string]string{inject.PartOfLabel: inject.PartOfValue},
		// The webhook configuration (cluster-scoped, installed by the chart)
		// owns the Secret: uninstalling collects it.
		Owner: func(ctx context.Context) []metav1.OwnerReference {
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := c.Get(ctx, client.ObjectKey{Name: o.WebhookConfigName}, &mwc); err != nil {
				return nil
			}
			return []metav1.OwnerReference{{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration", Name: mwc.Name, UID: mwc.UID}}
		},
		Log: log.FromContext(ctx).WithName("certs"),
	})
	if err != nil {
		return nil, nil, err
	}
	if err := m.Sync(ctx); err != nil {
		return nil, nil, fmt.Errorf("serving certificate: %w", err)
	}
	return m, m.Kick, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
