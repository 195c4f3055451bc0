package chart

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/test/testutil"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// chartDir is the chart under test, relative to this package.
const chartDir = "../../charts/skiff"

// kubeVersion is what the chart is rendered for: the version of the envtest
// kube-apiserver (hack/envtest-assets.sh). Without it the library assumes
// Kubernetes 1.20, older than the chart's kubeVersion.
var kubeVersion = chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

// render renders the chart as `helm install skiff charts/skiff -n namespace
// --dry-run` would, without a cluster.
func render(t *testing.T, namespace string, vals map[string]any) (*release.Release, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	install := action.NewInstall(&action.Configuration{Log: t.Logf})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = "skiff"
	install.Namespace = namespace
	install.KubeVersion = &kubeVersion
	return install.RunWithContext(t.Context(), chrt, vals)
}

// TestRender renders each case's values (testdata/<case>.values.yaml) and
// compares the manifests and the notes with testdata/<case>.yaml and
// testdata/<case>.notes.txt.
func TestRender(t *testing.T) {
	for _, tc := range []struct{ name, namespace string }{
		{"default", "east"},
		{"custom", "west"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := chartutil.ReadValuesFile(filepath.Join("testdata", tc.name+".values.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			rel, err := render(t, tc.namespace, vals)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			testutil.Golden(t, filepath.Join("testdata", tc.name+".yaml"), rel.Manifest, *update)
			testutil.Golden(t, filepath.Join("testdata", tc.name+".notes.txt"), rel.Info.Notes, *update)
		})
	}
}

// Without site.name the site is named after the release namespace, in
// every component's flags and in the notes.
func TestSiteNameDefaultsToNamespace(t *testing.T) {
	for _, vals := range []map[string]any{{}, {"site": map[string]any{"name": ""}}} {
		rel, err := render(t, "shop", vals)
		if err != nil {
			t.Fatalf("render %v: %v", vals, err)
		}
		if n := strings.Count(rel.Manifest, "--site=shop\n"); n != 3 {
			t.Errorf("values %v: --site=shop in %d containers, want 3 (controller, injector, node agent)", vals, n)
		}
		if strings.Contains(rel.Manifest, "--site=\n") {
			t.Errorf("values %v: a component has an empty --site", vals)
		}
		if !strings.HasPrefix(rel.Info.Notes, `skiff site "shop" is installed in namespace shop.`) {
			t.Errorf("values %v: notes begin %q", vals, rel.Info.Notes[:min(80, len(rel.Info.Notes))])
		}
	}
}

// TestSchemaRejects checks that values.schema.json refuses bad values before
// anything is rendered, with a message that names the field.
func TestSchemaRejects(t *testing.T) {
	site := map[string]any{"name": "east"}
	for _, tc := range []struct {
		name string
		vals map[string]any
		want []string // substrings of the error
	}{
		{"site name not a DNS label", map[string]any{"site": map[string]any{"name": "East_1"}}, []string{"at '/site/name'", "does not match pattern"}},
		{"site name too long", map[string]any{"site": map[string]any{"name": strings.Repeat("a", 64)}}, []string{"at '/site/name'", "maxLength"}},
		{"failure policy", map[string]any{"site": site, "injector": map[string]any{"failurePolicy": "Maybe"}}, []string{"at '/injector/failurePolicy'", "'Ignore'", "'Fail'"}},
		{"gateway replicas 0", map[string]any{"site": site, "gateway": map[string]any{"replicas": 0}}, []string{"at '/gateway/replicas'", "minimum"}},
		{"gateway grace period below the drain margin", map[string]any{"site": site, "gateway": map[string]any{"terminationGracePeriodSeconds": 4}}, []string{"at '/gateway/terminationGracePeriodSeconds'", "minimum"}},
		{"link certificate validity not a duration", map[string]any{"site": site, "gateway": map[string]any{"linkCertificateValidity": "soon"}}, []string{"at '/gateway/linkCertificateValidity'"}},
		{"injector replicas 0", map[string]any{"site": site, "injector": map[string]any{"replicas": 0}}, []string{"at '/injector/replicas'", "minimum"}},
		{"timeout 31", map[string]any{"site": site, "injector": map[string]any{"timeoutSeconds": 31}}, []string{"at '/injector/timeoutSeconds'", "maximum"}},
		{"unknown top-level key", map[string]any{"site": site, "gatway": map[string]any{}}, []string{"at ''", "'gatway'"}},
		{"unknown nested key", map[string]any{"site": site, "gateway": map[string]any{"replica": 2}}, []string{"at '/gateway'", "'replica'"}},
		{"service type", map[string]any{"site": site, "gateway": map[string]any{"service": map[string]any{"type": "External"}}}, []string{"at '/gateway/service/type'"}},
		{"pull policy", map[string]any{"site": site, "images": map[string]any{"pullPolicy": "Sometimes"}}, []string{"at '/images/pullPolicy'"}},
		{"log level", map[string]any{"site": site, "logLevel": "warn"}, []string{"at '/logLevel'"}},
		{"console not a boolean", map[string]any{"site": site, "console": map[string]any{"enabled": "yes"}}, []string{"at '/console/enabled'"}},
		{"redirect mode", map[string]any{"site": site, "redirect": map[string]any{"mode": "tproxy"}}, []string{"at '/redirect/mode'"}},
		{"native sidecar", map[string]any{"site": site, "proxy": map[string]any{"nativeSidecar": "yes"}}, []string{"at '/proxy/nativeSidecar'", "'auto'"}},
		{"proxy memory", map[string]any{"site": site, "proxy": map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "lots"}}}}, []string{"at '/proxy/resources/limits/memory'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, "east", tc.vals)
			if err == nil {
				t.Fatal("rendered; want a schema error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}
