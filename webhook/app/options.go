package app

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/sidecar/shared/admin"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/webhook/inject"
)

// Options are skiff-injector's settings. The fields after RESTConfig are
// not flags: tests set them.
type Options struct {
	Site                   string
	Namespace              string
	WebhookBindAddress     string
	WebhookConfigName      string
	ServiceName            string
	CertSecret             string
	CertDir                string
	SidecarImage           string
	ImagePullPolicy        string
	ControllerAddress      string
	CredentialsSecret      string
	ProxyCPURequest        string
	ProxyCPULimit          string
	ProxyMemoryRequest     string
	ProxyMemoryLimit       string
	ProxyLogLevel          string
	NativeSidecar          string
	RedirectMode           string
	MetricsBindAddress     string
	HealthProbeBindAddress string

	// RESTConfig reaches the apiserver (default: ctrl.GetConfig()).
	RESTConfig *rest.Config
	// ExtraSANs are added to the self-managed leaf: IP addresses or DNS
	// names (tests reach the webhook at 127.0.0.1).
	ExtraSANs []string
	// Self-managed certificate timing (defaults in package certs).
	CALifetime, LeafLifetime, CAPublishDelay, CertCheckInterval time.Duration
}

// Values of --native-sidecar.
const (
	NativeAuto  = "auto"
	NativeTrue  = "true"
	NativeFalse = "false"
)

// AddFlags registers the flags.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Site, "site", "", "name of the site (required)")
	fs.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the site's namespace: where the injector runs and the only namespace it injects (default $POD_NAMESPACE)")
	fs.StringVar(&o.WebhookBindAddress, "webhook-bind-address", ":"+strconv.Itoa(contract.WebhookPort), "host:port of the webhook's TLS server")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", "", "MutatingWebhookConfiguration whose caBundle the injector keeps current (required without --cert-dir)")
	fs.StringVar(&o.ServiceName, "service-name", "skiff-injector", "Service in front of the injector; its DNS names go into the self-managed certificate")
	fs.StringVar(&o.CertSecret, "cert-secret", "skiff-injector-tls", "Secret holding the self-managed CA and serving certificate")
	fs.StringVar(&o.CertDir, "cert-dir", "", "directory with tls.crt and tls.key (cert-manager mode, reloaded on change); empty: the injector manages its certificate in --cert-secret")
	fs.StringVar(&o.SidecarImage, "sidecar-image", "", "skiff-router image injected as skiff-proxy (required)")
	fs.StringVar(&o.ImagePullPolicy, "image-pull-policy", string(corev1.PullIfNotPresent), "pull policy of the injected containers: Always, IfNotPresent or Never")
	fs.StringVar(&o.ControllerAddress, "controller-address", "", "host:port of the site controller's xDS server (required)")
	fs.StringVar(&o.CredentialsSecret, "credentials-secret", inject.DefaultCredentialsSecret, "Secret mounted into the sidecar at "+contract.CredentialsDir)
	fs.StringVar(&o.ProxyCPURequest, "proxy-cpu-request", "", "sidecar CPU request (quantity; empty: unset)")
	fs.StringVar(&o.ProxyCPULimit, "proxy-cpu-limit", "", "sidecar CPU limit (quantity; empty: unset)")
	fs.StringVar(&o.ProxyMemoryRequest, "proxy-memory-request", "", "sidecar memory request (quantity; empty: unset)")
	fs.StringVar(&o.ProxyMemoryLimit, "proxy-memory-limit", "", "sidecar memory limit (quantity; empty: unset)")
	fs.StringVar(&o.ProxyLogLevel, "proxy-log-level", inject.DefaultLogLevel, "sidecar log level: "+strings.Join(inject.LogLevels, ", "))
	fs.StringVar(&o.NativeSidecar, "native-sidecar", NativeAuto, "inject skiff-proxy as a native sidecar (init container, restartPolicy Always): auto (when the apiserver is 1.29 or newer), true or false")
	fs.StringVar(&o.RedirectMode, "redirect-mode", string(inject.RedirectEBPF), "how pod traffic reaches the sidecar: ebpf (node agent) or iptables (adds the skiff-init container with NET_ADMIN)")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", "127.0.0.1:"+strconv.Itoa(contract.MetricsPort), "address of the Prometheus /metrics endpoint; loopback by default, :"+strconv.Itoa(contract.MetricsPort)+" for every interface; 0 disables it")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(contract.HealthPort), "address of /healthz and /readyz; loopback by default, :"+strconv.Itoa(contract.HealthPort)+" for every interface (kubelet probes the pod IP); 0 disables it")
}

// SelfManagedCerts reports whether the injector manages its certificate.
func (o *Options) SelfManagedCerts() bool { return o.CertDir == "" }

// Validate reports every bad option at once.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	required := []struct{ flag, value string }{
		{"--site", o.Site}, {"--namespace", o.Namespace}, {"--sidecar-image", o.SidecarImage},
		{"--controller-address", o.ControllerAddress}, {"--service-name", o.ServiceName},
		{"--credentials-secret", o.CredentialsSecret},
	}
	if o.SelfManagedCerts() {
		required = append(required, struct{ flag, value string }{"--webhook-config-name", o.WebhookConfigName},
			struct{ flag, value string }{"--cert-secret", o.CertSecret})
	}
	for _, r := range required {
		if r.value == "" {
			bad("%s is required", r.flag)
		}
	}
	if o.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(o.Namespace) {
			bad("--namespace %q: %s", o.Namespace, msg)
		}
	}
	if _, err := admin.SplitPort(o.WebhookBindAddress); err != nil {
		bad("--webhook-bind-address %q: %w", o.WebhookBindAddress, err)
	}
	if o.ControllerAddress != "" {
		if _, err := admin.SplitPort(o.ControllerAddress); err != nil {
			bad("--controller-address %q: %w", o.ControllerAddress, err)
		}
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
	switch corev1.PullPolicy(o.ImagePullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("--image-pull-policy %q: want Always, IfNotPresent or Never", o.ImagePullPolicy)
	}
	if _, err := o.resources(); err != nil {
		errs = append(errs, err)
	}
	if !validLogLevel(o.ProxyLogLevel) {
		bad("--proxy-log-level %q: want one of %s", o.ProxyLogLevel, strings.Join(inject.LogLevels, ", "))
	}
	switch o.NativeSidecar {
	case NativeAuto, NativeTrue, NativeFalse:
	default:
		bad("--native-sidecar %q: want auto, true or false", o.NativeSidecar)
	}
	switch inject.RedirectMode(o.RedirectMode) {
	case inject.RedirectEBPF, inject.RedirectIPTables:
	default:
		bad("--redirect-mode %q: want ebpf or iptables", o.RedirectMode)
	}
	for _, san := range o.ExtraSANs {
		if net.ParseIP(san) == nil && len(validation.IsDNS1123Subdomain(san)) > 0 {
			bad("extra SAN %q: want an IP address or a DNS name", san)
		}
	}
	return errors.Join(errs...)
}

func validLogLevel(l string) bool {
	for _, v := range inject.LogLevels {
		if v == l {
			return true
		}
	}
	return false
}

// resources builds the sidecar's default resources from the quantity flags.
func (o *Options) resources() (corev1.ResourceRequirements, error) {
	var res corev1.ResourceRequirements
	var errs []error
	for _, q := range []struct {
		flag, value string
		list        *corev1.ResourceList
		name        corev1.ResourceName
	}{
		{"--proxy-cpu-request", o.ProxyCPURequest, &res.Requests, corev1.ResourceCPU},
		{"--proxy-cpu-limit", o.ProxyCPULimit, &res.Limits, corev1.ResourceCPU},
		{"--proxy-memory-request", o.ProxyMemoryRequest, &res.Requests, corev1.ResourceMemory},
		{"--proxy-memory-limit", o.ProxyMemoryLimit, &res.Limits, corev1.ResourceMemory},
	} {
		if q.value == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.value)
		if err == nil && v.Sign() < 0 {
			err = fmt.Errorf("negative quantity")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", q.flag, q.value, err))
			continue
		}
		if *q.list == nil {
			*q.list = corev1.ResourceList{}
		}
		(*q.list)[q.name] = v
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := res.Requests[name]
		lim, okLim := res.Limits[name]
		if okReq && okLim && req.Cmp(lim) > 0 {
			errs = append(errs, fmt.Errorf("proxy %s request %s exceeds its limit %s", name, req.String(), lim.String()))
		}
	}
	return res, errors.Join(errs...)
}

// injectConfig is the inject.Config of o, given whether native sidecars
// are used.
func (o *Options) injectConfig(native bool) (inject.Config, error) {
	res, err := o.resources()
	if err != nil {
		return inject.Config{}, err
	}
	cfg := inject.Config{
		SidecarImage:      o.SidecarImage,
		ImagePullPolicy:   corev1.PullPolicy(o.ImagePullPolicy),
		ControllerAddr:    o.ControllerAddress,
		Site:              o.Site,
		Namespace:         o.Namespace,
		CredentialsSecret: o.CredentialsSecret,
		Resources:         res,
		LogLevel:          o.ProxyLogLevel,
		NativeSidecar:     native,
		RedirectMode:      inject.RedirectMode(o.RedirectMode),
	}
	return cfg, cfg.Validate()
}
