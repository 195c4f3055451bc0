package app

import (
	"flag"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func validOptions(t *testing.T) Options {
	t.Helper()
	var o Options
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{
		"--site=site-a", "--namespace=skiff", "--sidecar-image=skiff-router:v1",
		"--controller-address=skiff-controller.skiff.svc:15010", "--webhook-config-name=skiff-injector",
	}); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{"defaults", func(*Options) {}, ""},
		{"cert-manager mode needs no webhook config", func(o *Options) { o.CertDir, o.WebhookConfigName = "/certs", "" }, ""},
		{"all quantities", func(o *Options) {
			o.ProxyCPURequest, o.ProxyCPULimit, o.ProxyMemoryRequest, o.ProxyMemoryLimit = "100m", "1", "64Mi", "256Mi"
		}, ""},
		{"required", func(o *Options) {
			o.Site, o.Namespace, o.SidecarImage, o.ControllerAddress, o.WebhookConfigName = "", "", "", "", ""
		}, "--site is required\n--namespace is required\n--sidecar-image is required\n--controller-address is required\n--webhook-config-name is required"},
		{"namespace not a label", func(o *Options) { o.Namespace = "Skiff" },
			`--namespace "Skiff": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{"bind address", func(o *Options) { o.WebhookBindAddress = "9443" },
			`--webhook-bind-address "9443": address 9443: missing port in address`},
		{"controller port", func(o *Options) { o.ControllerAddress = "ctl:xds" }, `--controller-address "ctl:xds": port "xds": want 1-65535`},
		{"metrics off is fine, junk is not", func(o *Options) { o.MetricsBindAddress, o.HealthProbeBindAddress = "0", "localhost" },
			`--health-probe-bind-address "localhost": address localhost: missing port in address (or 0 to disable)`},
		{"pull policy", func(o *Options) { o.ImagePullPolicy = "ifnotpresent" }, `--image-pull-policy "ifnotpresent": want Always, IfNotPresent or Never`},
		{"bad quantity", func(o *Options) { o.ProxyMemoryLimit = "1GB" },
			`--proxy-memory-limit "1GB": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		{"negative quantity", func(o *Options) { o.ProxyCPURequest = "-1" }, `--proxy-cpu-request "-1": negative quantity`},
		{"request above limit", func(o *Options) { o.ProxyCPURequest, o.ProxyCPULimit = "2", "500m" }, "proxy cpu request 2 exceeds its limit 500m"},
		{"log level", func(o *Options) { o.ProxyLogLevel = "warn" }, `--proxy-log-level "warn": want one of debug, info, error`},
		{"native", func(o *Options) { o.NativeSidecar = "yes" }, `--native-sidecar "yes": want auto, true or false`},
		{"redirect", func(o *Options) { o.RedirectMode = "nftables" }, `--redirect-mode "nftables": want ebpf or iptables`},
		{"extra SAN", func(o *Options) { o.ExtraSANs = []string{"127.0.0.1", "injector.local", "not a name"} },
			`extra SAN "not a name": want an IP address or a DNS name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions(t)
			tc.mod(&o)
			got := ""
			if err := o.Validate(); err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(got, tc.wantErr); diff != "" {
				t.Errorf("Validate() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestFlagDefaults(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "from-env")
	var o Options
	o.AddFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	want := Options{
		Namespace: "from-env", WebhookBindAddress: ":9443", ServiceName: "skiff-injector",
		CertSecret: "skiff-injector-tls", ImagePullPolicy: "IfNotPresent", CredentialsSecret: "skiff-sidecar",
		ProxyLogLevel: "info", NativeSidecar: "auto", RedirectMode: "ebpf",
		MetricsBindAddress: "127.0.0.1:15090", HealthProbeBindAddress: "127.0.0.1:15021",
	}
	if diff := cmp.Diff(o, want); diff != "" {
		t.Errorf("defaults (-got +want):\n%s", diff)
	}
}

func TestInjectConfigResources(t *testing.T) {
	o := validOptions(t)
	o.ProxyCPURequest, o.ProxyMemoryRequest, o.ProxyMemoryLimit = "100m", "64Mi", "128Mi"
	cfg, err := o.injectConfig(true)
	if err != nil {
		t.Fatal(err)
	}
	want := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	if diff := cmp.Diff(cfg.Resources, want); diff != "" {
		t.Errorf("resources (-got +want):\n%s", diff)
	}
}

func TestSupportsNativeSidecar(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.28.9":             false,
		"v1.29.0":             true,
		"v1.29.3-eks-adc7111": true,
		"v1.37.2":             true,
		"v2.0.0":              true,
	} {
		got, err := supportsNativeSidecar(v)
		if err != nil || got != want {
			t.Errorf("supportsNativeSidecar(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	if _, err := supportsNativeSidecar("latest"); err == nil {
		t.Errorf("supportsNativeSidecar(latest): no error")
	}
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
