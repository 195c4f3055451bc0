package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func testConfig() Config {
	return Config{
		SidecarImage:    "ghcr.io/skiff-io/skiff-router:v0.1.0",
		ImagePullPolicy: corev1.PullIfNotPresent,
		ControllerAddr:  "skiff-controller.site-a.svc:15010",
		Site:            "site-a",
		Namespace:       "site-a",
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("1"),
				corev1.ResourceMemory: resource.MustParse("256Mi"),
			},
		},
		NativeSidecar: true,
		RedirectMode:  RedirectEBPF,
	}
}

func testPod(mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-",
			Namespace:    "site-a",
			Labels:       map[string]string{"app": "web"},
			Annotations:  map[string]string{contract.InjectAnnotation: "true"},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  "web",
				Image: "nginx:1.27",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
			}},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func annotate(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := 0; i+1 < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func withConfig(mods ...func(*Config)) Config {
	c := testConfig()
	for _, m := range mods {
		m(&c)
	}
	return c
}

var goldenCases = []struct {
	name string
	pod  *corev1.Pod
	cfg  Config
}{
	{"plain", testPod(), testConfig()},
	{"regular-sidecar", testPod(), withConfig(func(c *Config) { c.NativeSidecar = false })},
	{"regular-sidecar-default-container-set", testPod(annotate(DefaultContainerAnnotation, "other")),
		withConfig(func(c *Config) { c.NativeSidecar = false })},
	{"iptables", testPod(), withConfig(func(c *Config) { c.RedirectMode = RedirectIPTables })},
	{"iptables-regular-excludes", testPod(annotate(
		contract.ConfigExcludeOutboundPortsAnnotation, "5432, 53",
		contract.ConfigExcludeOutboundCIDRsAnnotation, "10.96.0.0/12,fd00::1/8")),
		withConfig(func(c *Config) { c.RedirectMode = RedirectIPTables; c.NativeSidecar = false })},
	{"user-init-containers", testPod(func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate:1"}}
	}), testConfig()},
	{"resources-override", testPod(annotate(
		contract.ConfigProxyCPUAnnotation, "250m",
		contract.ConfigProxyMemoryAnnotation, "128Mi")), testConfig()},
	{"cpu-above-limit", testPod(annotate(contract.ConfigProxyCPUAnnotation, "2")), testConfig()},
	{"resources-unset-in-config", testPod(annotate(contract.ConfigProxyMemoryAnnotation, "100M")),
		withConfig(func(c *Config) { c.Resources = corev1.ResourceRequirements{} })},
	{"log-level", testPod(annotate(contract.ConfigLogLevelAnnotation, "debug")), testConfig()},
	{"excludes", testPod(annotate(
		contract.ConfigExcludeOutboundPortsAnnotation, "8125",
		contract.ConfigExcludeOutboundCIDRsAnnotation, "169.254.169.254")), testConfig()},
	{"access-log", testPod(annotate(contract.ConfigAccessLogAnnotation, "true")), testConfig()},
	{"access-log-off", testPod(annotate(contract.ConfigAccessLogAnnotation, "false")), testConfig()},
	{"bad-access-log", testPod(annotate(contract.ConfigAccessLogAnnotation, "on")), testConfig()},
	{"grace-period-60", testPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(60)) }), testConfig()},
	{"grace-period-6-regular", testPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(6)) }),
		withConfig(func(c *Config) { c.NativeSidecar = false })},
	{"defaults", testPod(), withConfig(func(c *Config) {
		c.CredentialsSecret, c.LogLevel, c.RedirectMode, c.ImagePullPolicy = "", "", "", ""
	})},
	{"not-annotated", testPod(func(p *corev1.Pod) { p.Annotations = nil }), testConfig()},
	{"opted-out", testPod(annotate(contract.InjectAnnotation, "false")), testConfig()},
	{"invalid-inject-value", testPod(annotate(contract.InjectAnnotation, "yes")), testConfig()},
	{"host-network", testPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), testConfig()},
	{"kube-system", testPod(func(p *corev1.Pod) { p.Namespace = "kube-system" }), testConfig()},
	{"kube-other", testPod(func(p *corev1.Pod) { p.Namespace = "kube-flannel" }), testConfig()},
	{"other-namespace", testPod(func(p *corev1.Pod) { p.Namespace = "site-b" }), testConfig()},
	{"skiff-component", testPod(func(p *corev1.Pod) { p.Labels[PartOfLabel] = PartOfValue }), testConfig()},
	{"istio-proxy", testPod(func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2"})
	}), testConfig()},
	{"linkerd-proxy-native", testPod(func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "linkerd-proxy", Image: "linkerd/proxy"}}
	}), testConfig()},
	{"already-injected-status", testPod(annotate(contract.StatusAnnotation, `{"version":1}`)), testConfig()},
	{"already-injected-container", testPod(func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: contract.SidecarContainerName})
	}), testConfig()},
	{"bad-cpu", testPod(annotate(contract.ConfigProxyCPUAnnotation, "two")), testConfig()},
	{"bad-annotations", testPod(annotate(
		contract.ConfigAnnotationPrefix+"proxy-cpus", "1",
		contract.ConfigLogLevelAnnotation, "warn",
		contract.ConfigExcludeOutboundPortsAnnotation, "80,0",
		contract.ConfigExcludeOutboundCIDRsAnnotation, "10.0.0.0/33")), testConfig()},
	{"bad-annotation-not-injected", testPod(annotate(
		contract.InjectAnnotation, "false",
		contract.ConfigProxyCPUAnnotation, "two")), testConfig()},
}

// golden is what a testdata/<case>.golden file holds.
type golden struct {
	Error  string                `json:"error,omitempty"`
	Report *Report               `json:"report,omitempty"`
	Patch  []jsonpatch.Operation `json:"patch,omitempty"`
}

func TestInjectGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			orig := tc.pod.DeepCopy()
			got, rep, err := Inject(tc.pod, tc.cfg)
			if diff := cmp.Diff(tc.pod, orig); diff != "" {
				t.Fatalf("Inject modified its input (-got +want):\n%s", diff)
			}
			var g golden
			switch {
			case err != nil:
				g.Error = err.Error()
				if !errors.As(err, new(*AnnotationError)) {
					t.Errorf("error %v is no *AnnotationError", err)
				}
			case !rep.Injected:
				g.Report = &rep
				if got != tc.pod {
					t.Errorf("skipped pod is not returned as is")
				}
			default:
				g.Report = &rep
				g.Patch = patch(t, orig, got)
			}
			checkGolden(t, filepath.Join("testdata", tc.name+".golden"), g)

			if rep.Injected {
				// Injection is idempotent: a second pass skips.
				_, rep2, err := Inject(got, tc.cfg)
				if err != nil || rep2.Injected || rep2.Reason != ReasonAlreadyInjected {
					t.Errorf("second Inject: %+v, %v; want skipped as %q", rep2, err, ReasonAlreadyInjected)
				}
				if got.Annotations[contract.StatusAnnotation] != rep.Status {
					t.Errorf("status annotation %q, report %q", got.Annotations[contract.StatusAnnotation], rep.Status)
				}
			}
		})
	}
}

// patch computes the RFC 6902 patch from orig to mutated the way
// controller-runtime's PatchResponseFromRaw does, puts its operations in a
// stable order (jsonpatch walks maps in random order), and checks that the
// ordered patch still turns orig into mutated.
func patch(t *testing.T, orig, mutated *corev1.Pod) []jsonpatch.Operation {
	t.Helper()
	a, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(mutated)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(ops, func(x, y jsonpatch.Operation) int { return comparePaths(x.Path, y.Path) })

	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatchapply.DecodePatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := p.Apply(a)
	if err != nil {
		t.Fatalf("apply patch: %v", err)
	}
	var gotPod corev1.Pod
	if err := json.Unmarshal(applied, &gotPod); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&gotPod, mutated); diff != "" {
		t.Fatalf("patched pod differs from Inject's (-got +want):\n%s", diff)
	}
	return ops
}

// comparePaths orders JSON pointers segment by segment, numbers numerically.
func comparePaths(a, b string) int {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		an, aerr := strconv.Atoi(as[i])
		bn, berr := strconv.Atoi(bs[i])
		if aerr == nil && berr == nil {
			return an - bn
		}
		return strings.Compare(as[i], bs[i])
	}
	return len(as) - len(bs)
}

func checkGolden(t *testing.T, path string, g golden) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(g); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(got), string(want)); diff != "" {
		t.Errorf("%s differs (-got +want), rerun with -update if intended:\n%s", path, diff)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"ok", func(*Config) {}, ""},
		{"defaults fill log level and mode", func(c *Config) { c.LogLevel, c.RedirectMode = "", "" }, ""},
		{"no image", func(c *Config) { c.SidecarImage = "" }, "sidecar image is empty"},
		{"controller without port", func(c *Config) { c.ControllerAddr = "skiff-controller" }, `controller address "skiff-controller": address skiff-controller: missing port in address`},
		{"no site", func(c *Config) { c.Site = "" }, "site is empty"},
		{"no namespace", func(c *Config) { c.Namespace = "" }, "namespace is empty"},
		{"bad log level", func(c *Config) { c.LogLevel = "warn" }, `log level "warn": want one of [debug info error]`},
		{"bad mode", func(c *Config) { c.RedirectMode = "nft" }, `redirect mode "nft": want ebpf or iptables`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := withConfig(tc.mod).Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(got, tc.wantErr); diff != "" {
				t.Errorf("Validate() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	got := Status{Version: 1, InitContainers: []string{"skiff-proxy", "skiff-init"}, Volumes: []string{"skiff-credentials"}}.String()
	want := `{"version":1,"containers":[],"initContainers":["skiff-init","skiff-proxy"],"volumes":["skiff-credentials"]}`
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}
