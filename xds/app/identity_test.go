package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	routerapp "github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/state"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/test/testutil/kubetest"
	"github.com/skiff-io/skiff/xds/app"
	"github.com/skiff-io/skiff/xds/source/kube"
)

// The token flow of Kubernetes sites, with a real apiserver: a
// token-request Secret in east is filled by east's controller; the same
// Secret applied in west becomes a link; each controller writes its
// gateway's site (site file, CA, link tokens, ledger entries) into the
// Secret skiff-site, which the test materializes as the kubelet would; the
// gateways started from those files link up, east's accepting a token its
// controller (not its gateway) issued; and a sidecar reaches east's gateway
// and controller with the credential in skiff-sidecar.
func TestKubernetesTokenFlow(t *testing.T) {
	c := startAPIServer(t)
	ctx := t.Context()
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	type site struct {
		name                       string
		link, xds, admin, ctlAdmin int
		siteDir, dataDir           string
	}
	sites := map[string]*site{}
	for _, name := range []string{"east", "west"} {
		s := &site{name: name, link: port(), xds: port(), admin: port(), ctlAdmin: port(),
			siteDir: filepath.Join(dir, name, "site"), dataDir: filepath.Join(dir, name, "data")}
		sites[name] = s
		createSite(t, c, name)
		runBG(t, name+" controller", func(ctx context.Context) error {
			return app.Run(ctx, app.Options{Kube: true, KubeConfig: apiConfig, Site: name, Namespace: name, GatewayService: "skiff-gateway",
				GatewayAdmin: addr(s.admin), LinkAdvertise: addr(s.link), LinkBind: addr(s.link),
				GatewaySiteDir: s.siteDir, GatewayDataDir: s.dataDir,
				XDSBindAddress: addr(s.xds), MetricsBindAddress: addr(s.ctlAdmin), HealthBindAddress: "0"}, testr.New(t).WithName(name+"-controller"))
		})
		// The kubelet's part: keep the site Secret's files in siteDir.
		runBG(t, name+" secret volume", func(ctx context.Context) error {
			kubetest.MaterializeSecret(ctx, c, name, kube.SiteSecret, s.siteDir)
			return nil
		})
	}

	// east issues a token on request; it expires while the link is up.
	const tokenTTL = 15 * time.Second
	req := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "link-to-east", Namespace: "east", Labels: map[string]string{contract.TypeLabel: "token-request"},
		Annotations: map[string]string{contract.ExpiresAnnotation: tokenTTL.String()}}}
	must(t, c.Create(ctx, req))
	testutil.Eventually(t, 20*time.Second, "east fills the token request", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(req), req); err != nil {
			return err
		}
		if len(req.Data[contract.TokenKey]) == 0 {
			return fmt.Errorf("no token yet")
		}
		return nil
	})
	// The user applies the same Secret in west: it becomes a link.
	copied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: "west", Labels: req.Labels, Annotations: map[string]string{contract.CostAnnotation: "3"}}, Data: req.Data}
	must(t, c.Create(ctx, copied))
	testutil.Eventually(t, 20*time.Second, "west relabels it as a link and writes it into its site", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(copied), copied); err != nil {
			return err
		}
		if copied.Labels[contract.TypeLabel] != "link" {
			return fmt.Errorf("label %q", copied.Labels[contract.TypeLabel])
		}
		b, err := os.ReadFile(filepath.Join(sites["west"].siteDir, "site.yaml"))
		if err != nil || !strings.Contains(string(b), "token: link-link-to-east.yaml\n    cost: 3") {
			return fmt.Errorf("west site.yaml: %s %v", b, err)
		}
		return nil
	})

	// The site Secret, derived from the others, is owned by the chart's
	// gateway Service, so that uninstalling collects it; the site's
	// identity and memory (CA, state, the sidecars' credential) have no
	// owner, so that a reinstall keeps the site and its links.
	for _, name := range []string{kube.CASecret, kube.StateSecret, kube.SiteSecret, kube.SidecarSecret} {
		var sec corev1.Secret
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: name}, &sec))
		owned := len(sec.OwnerReferences) == 1 && sec.OwnerReferences[0].Kind == "Service" && sec.OwnerReferences[0].Name == "skiff-gateway"
		if want := name == kube.SiteSecret; owned != want || (!want && len(sec.OwnerReferences) > 0) {
			t.Errorf("secret %s owners %+v, want owned by the gateway Service: %v", name, sec.OwnerReferences, want)
		}
	}

	// Gateways from the controller-written site files, their state in the
	// Secret skiff-site-state; each starts with an empty data dir, as a
	// new pod's emptyDir is.
	gateways := map[string]func(){}
	startGateway := func(name string) {
		s := sites[name]
		must(t, os.RemoveAll(s.dataDir))
		gateways[name] = runBG(t, name+" gateway", func(ctx context.Context) error {
			return routerapp.RunGateway(ctx, routerapp.ServeOptions{SiteFile: filepath.Join(s.siteDir, "site.yaml"), Controller: addr(s.xds),
				MetricsBindAddress: addr(s.admin), HealthBindAddress: "0", Name: name + "-gw", Kube: stateKube(t, name)}, testr.New(t).WithName(name+"-gateway"))
		})
	}
	linked := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		testutil.Eventually(t, 30*time.Second, what, func() error {
			for self, peer := range map[string]string{"east": "west", "west": "east"} {
				var doc netview.Document
				if err := getJSON(sites[self].admin, "/view", &doc); err != nil {
					return err
				}
				if !slices.ContainsFunc(doc.Sites, func(s netview.DocumentSite) bool { return s.Name == peer }) {
					return fmt.Errorf("%s's gateway does not reach %s", self, peer)
				}
			}
			return nil
		})
		return time.Since(start)
	}
	for _, name := range []string{"east", "west"} {
		testutil.Eventually(t, 20*time.Second, name+" site file written", func() error {
			_, err := os.Stat(filepath.Join(sites[name].siteDir, "site.yaml"))
			return err
		})
		startGateway(name)
	}
	linked("west's link to east is up (east's gateway takes the token its controller issued)")
	testutil.Eventually(t, 30*time.Second, "east's controller sees west", func() error {
		if st := status(t, sites["east"].ctlAdmin); !strings.Contains(st, `"name": "west"`) {
			return fmt.Errorf("east's controller does not see west yet")
		}
		return nil
	})
	// What each side must remember is in its state Secret: east's ledger
	// has west's redemption, west has the link certificate.
	var eastState, westState corev1.Secret
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: kube.StateSecret}, &eastState))
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "west", Name: kube.StateSecret}, &westState))
	tokID := req.Annotations[contract.TokenIDAnnotation]
	if e := eastState.Data["tokens."+tokID+".yaml"]; !bytes.Contains(e, []byte("site: west")) {
		t.Errorf("east's ledger entry of token %s records no redemption by west:\n%s", tokID, e)
	}
	if _, ok := westState.Data["links."+tokID+".crt"]; !ok {
		t.Errorf("west's state has no link certificate for token %s: keys %v", tokID, slices.Sorted(maps.Keys(westState.Data)))
	}

	// After the token expired, both gateways are recreated with empty
	// data dirs: the link comes back on the link certificate.
	tok, err := token.Parse(req.Data[contract.TokenKey])
	must(t, err)
	time.Sleep(time.Until(tok.Expires.Add(time.Second)))
	for _, name := range []string{"east", "west"} {
		gateways[name]()
	}
	for _, name := range []string{"east", "west"} {
		startGateway(name)
	}
	t.Logf("after the token expired, both gateways recreated: linked again in %.1fs", linked("the link comes back after both gateways are recreated past the token's expiry").Seconds())

	// Deleting the token request revokes the token: east's controller
	// removes its ledger entry (the sidecars' member entry stays).
	must(t, c.Delete(ctx, req))
	testutil.Eventually(t, 20*time.Second, "east's ledger entry of the token is removed", func() error {
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: kube.StateSecret}, &eastState))
		if _, ok := eastState.Data["tokens."+tokID+".yaml"]; ok {
			return fmt.Errorf("entry still there")
		}
		return nil
	})
	var sidecarSecret corev1.Secret
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: kube.SidecarSecret}, &sidecarSecret))
	member, err := token.Parse(sidecarSecret.Data[contract.TokenKey])
	must(t, err)
	if _, ok := eastState.Data["tokens."+member.ID+".yaml"]; !ok {
		t.Errorf("the member token's entry went with the link token's")
	}

	// A sidecar of east with the credential the controller keeps. It has
	// no redirection (the test runs no node agent), so once its redirect
	// wait is over it reports its redirection lost, which the controller's
	// status shows.
	creds := filepath.Join(dir, "creds")
	var sc corev1.Secret
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: kube.SidecarSecret}, &sc))
	must(t, os.MkdirAll(creds, 0o700))
	must(t, os.WriteFile(filepath.Join(creds, "token.yaml"), sc.Data[contract.TokenKey], 0o600))
	runBG(t, "sidecar", func(ctx context.Context) error {
		return routerapp.RunSidecar(ctx, routerapp.ServeOptions{CredentialsDir: creds, Controller: addr(sites["east"].xds), Name: "east/client-1",
			OutboundBindAddress: addr(port()), RedirectWait: 100 * time.Millisecond, MetricsBindAddress: "0", HealthBindAddress: "0"}, testr.New(t).WithName("sidecar"))
	})
	testutil.Eventually(t, 20*time.Second, "east's controller serves the sidecar, which reports its redirection lost", func() error {
		st := status(t, sites["east"].ctlAdmin)
		if !strings.Contains(st, `"sidecar~east~east/client-1"`) {
			return fmt.Errorf("no sidecar node in status")
		}
		if !strings.Contains(st, `"redirect": "lost"`) {
			return fmt.Errorf("the sidecar's redirect state is not in status: %s", st)
		}
		return nil
	})

	// A bad link Secret is reported on itself and changes nothing.
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bad-link", Namespace: "west", Labels: map[string]string{contract.TypeLabel: "link"}},
		Data: map[string][]byte{contract.TokenKey: bytes.Replace(req.Data[contract.TokenKey], []byte("\nsite: east"), []byte("\nsite: evil"), 1)}}
	must(t, c.Create(ctx, bad))
	testutil.Eventually(t, 20*time.Second, "an InvalidLink event on west/bad-link", func() error {
		return findEvent(ctx, c, "west", "bad-link", "InvalidLink")
	})
	b, _ := os.ReadFile(filepath.Join(sites["west"].siteDir, "site.yaml"))
	if strings.Contains(string(b), "bad-link") {
		t.Errorf("west's site file took the bad link:\n%s", b)
	}
}

// Link policies from annotations, with a real apiserver: on link Secrets
// they become the allow: of the links in the gateway's site file, on
// token-request Secrets they go into the ledger entries of the tokens.
// A bad annotation is a Warning Event; the link or token keeps its last
// good policy, and a new link or an unfilled request is refused.
func TestKubernetesLinkPolicy(t *testing.T) {
	c := startAPIServer(t)
	ctx := t.Context()
	createSite(t, c, "west")
	dir := t.TempDir()
	siteDir := filepath.Join(dir, "site")
	link := testutil.FreePort(t, "127.0.0.1")
	runBG(t, "west controller", func(ctx context.Context) error {
		return app.Run(ctx, app.Options{Kube: true, KubeConfig: apiConfig, Site: "west", Namespace: "west", GatewayService: "skiff-gateway",
			LinkAdvertise: addr(link), LinkBind: addr(link), GatewaySiteDir: siteDir, GatewayDataDir: filepath.Join(dir, "data"),
			XDSBindAddress: addr(testutil.FreePort(t, "127.0.0.1")), MetricsBindAddress: "0", HealthBindAddress: "0"}, testr.New(t).WithName("west-controller"))
	})

	// The site Secret as the gateway reads it (its site file parsed), and
	// the ledger in the state Secret.
	type written struct {
		links  map[string]sitefile.Link // by token file
		ledger *token.Ledger
	}
	read := func() (*written, error) {
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: "west", Name: kube.SiteSecret}, &s); err != nil {
			return nil, err
		}
		site, err := sitefile.Parse(filepath.Join(siteDir, "site.yaml"), s.Data["site.yaml"])
		if err != nil {
			return nil, fmt.Errorf("site.yaml does not parse: %w\n%s", err, s.Data["site.yaml"])
		}
		w := &written{links: map[string]sitefile.Link{}}
		for _, l := range site.Links {
			w.links[filepath.Base(l.Token)] = l
		}
		store, err := state.NewSecret(stateKube(t, "west"), kube.StateSecret)
		if err != nil {
			return nil, err
		}
		w.ledger = token.NewLedger(store)
		return w, nil
	}
	linkPolicy := func(file string, want policy.Policy) func() error {
		return func() error {
			w, err := read()
			if err != nil {
				return err
			}
			l, ok := w.links[file]
			if !ok {
				return fmt.Errorf("no link %s in site.yaml", file)
			}
			if !l.Policy.Equal(want) {
				return fmt.Errorf("link %s policy %v, want %v", file, l.Policy, want)
			}
			return nil
		}
	}
	tokenPolicy := func(req string, want policy.Policy) func() error {
		return func() error {
			var s corev1.Secret
			if err := c.Get(ctx, client.ObjectKey{Namespace: "west", Name: req}, &s); err != nil {
				return err
			}
			id := s.Annotations[contract.TokenIDAnnotation]
			if id == "" {
				return fmt.Errorf("request %s not filled", req)
			}
			w, err := read()
			if err != nil {
				return err
			}
			got, err := w.ledger.Policy(id)
			if err != nil {
				return err
			}
			if !got.Equal(want) {
				return fmt.Errorf("token %s policy %v, want %v", id, got, want)
			}
			return nil
		}
	}
	// Another site's token, for link Secrets.
	certPEM, keyPEM, err := pki.NewCAPEM("east")
	must(t, err)
	eastCA, err := pki.ParseCA(certPEM, keyPEM)
	must(t, err)
	eastToken := func() []byte {
		tok, err := token.Issue(eastCA, "east", "127.0.0.1:1", time.Hour, 1, time.Now())
		must(t, err)
		data, err := tok.Marshal()
		must(t, err)
		return data
	}
	secret := func(name, typ string, ann map[string]string, data []byte) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "west", Labels: map[string]string{contract.TypeLabel: typ}, Annotations: ann}}
		if data != nil {
			s.Data = map[string][]byte{contract.TokenKey: data}
		}
		must(t, c.Create(ctx, s))
		return s
	}

	// Links: with a policy, without one, and a new one with a bad policy.
	secret("to-east", "link", map[string]string{contract.AllowAdvertiseAnnotation: "db-*, backend:8080", contract.AllowReachAnnotation: "echo"}, eastToken())
	secret("to-north", "link", nil, eastToken())
	secret("to-south", "link", map[string]string{contract.AllowReachAnnotation: "echo,Frontend"}, eastToken())
	eastPolicy := policy.Policy{Advertise: []string{"db-*", "backend:8080"}, Reach: []string{"echo"}}
	testutil.Eventually(t, 20*time.Second, "link to-east with its policy", linkPolicy("link-to-east.yaml", eastPolicy))
	testutil.Eventually(t, 10*time.Second, "link to-north allowing all", linkPolicy("link-to-north.yaml", policy.Policy{}))
	testutil.Eventually(t, 10*time.Second, "an InvalidLink event on to-south", func() error {
		return findEvent(ctx, c, "west", "to-south", "InvalidLink", "annotation skiff.io/allow-reach: item 2:", `got "Frontend"`, "not made until it is fixed")
	})

	// Token requests: with a policy, without one, and a new one with a
	// bad policy, which gets no token.
	secret("restricted", "token-request", map[string]string{contract.AllowReachAnnotation: "frontend:80,shop.*"}, nil)
	secret("open", "token-request", nil, nil)
	secret("fresh-bad", "token-request", map[string]string{contract.AllowAdvertiseAnnotation: ""}, nil)
	restrictedPolicy := policy.Policy{Reach: []string{"frontend:80", "shop.*"}}
	testutil.Eventually(t, 20*time.Second, "token of restricted with its policy", tokenPolicy("restricted", restrictedPolicy))
	testutil.Eventually(t, 10*time.Second, "token of open allowing all", tokenPolicy("open", policy.Policy{}))
	testutil.Eventually(t, 10*time.Second, "an InvalidTokenRequest event on fresh-bad", func() error {
		return findEvent(ctx, c, "west", "fresh-bad", "InvalidTokenRequest", "annotation skiff.io/allow-advertise: must list at least one pattern", "no token is issued")
	})
	var fresh corev1.Secret
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "west", Name: "fresh-bad"}, &fresh))
	if len(fresh.Data[contract.TokenKey]) > 0 {
		t.Errorf("fresh-bad was given a token")
	}

	// Bad annotations on a link and a token request in use: Warning
	// Events, and both keep their last good policy, also through later
	// reconciles (the cost of to-north changes after).
	annotateSecret(t, c, "west", "to-east", map[string]string{contract.AllowReachAnnotation: "echo,,frontend"})
	annotateSecret(t, c, "west", "restricted", map[string]string{contract.AllowReachAnnotation: "Frontend"})
	testutil.Eventually(t, 20*time.Second, "InvalidLink on to-east, InvalidTokenRequest on restricted", func() error {
		if err := findEvent(ctx, c, "west", "to-east", "InvalidLink", `item 2 of "echo,,frontend" is empty`, "keeps its last good policy (advertise=db-*,backend:8080 reach=echo)"); err != nil {
			return err
		}
		return findEvent(ctx, c, "west", "restricted", "InvalidTokenRequest", `got "Frontend"`, "keep their last good policy")
	})
	annotateSecret(t, c, "west", "to-north", map[string]string{contract.CostAnnotation: "7"})
	testutil.Eventually(t, 20*time.Second, "to-north's new cost", func() error {
		w, err := read()
		if err != nil {
			return err
		}
		if cost := w.links["link-to-north.yaml"].Cost; cost != 7 {
			return fmt.Errorf("cost %d", cost)
		}
		return nil
	})
	if err := linkPolicy("link-to-east.yaml", eastPolicy)(); err != nil {
		t.Errorf("after a bad annotation: %v", err)
	}
	if err := tokenPolicy("restricted", restrictedPolicy)(); err != nil {
		t.Errorf("after a bad annotation: %v", err)
	}
	if w, err := read(); err != nil || len(w.links) != 2 {
		t.Errorf("links %v (%v), want to-east and to-north only", w, err)
	}

	// Fixed: the new policies apply.
	annotateSecret(t, c, "west", "to-east", map[string]string{contract.AllowReachAnnotation: "frontend:80"})
	annotateSecret(t, c, "west", "restricted", map[string]string{contract.AllowReachAnnotation: "*"})
	testutil.Eventually(t, 20*time.Second, "to-east's new policy", linkPolicy("link-to-east.yaml", policy.Policy{Advertise: []string{"db-*", "backend:8080"}, Reach: []string{"frontend:80"}}))
	testutil.Eventually(t, 20*time.Second, "restricted's new policy", tokenPolicy("restricted", policy.Policy{Reach: []string{"*"}}))
}

func annotateSecret(t *testing.T, c client.Client, ns, name string, ann map[string]string) {
	t.Helper()
	var s corev1.Secret
	must(t, c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &s))
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	for k, v := range ann {
		s.Annotations[k] = v
	}
	must(t, c.Update(t.Context(), &s))
}

// materialize copies a Secret's data into dir whenever it changes.

func status(t *testing.T, port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", port))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// stateKube is how a test's gateway reaches its state Secret in the test's
// API server (a pod would use its service account).
func stateKube(t *testing.T, ns string) *state.Kube {
	t.Helper()
	hc, err := rest.HTTPClientFor(apiConfig)
	must(t, err)
	server := apiConfig.Host
	if !strings.HasPrefix(server, "https://") && !strings.HasPrefix(server, "http://") {
		server = "https://" + server
	}
	return &state.Kube{Server: server, Client: hc, Namespace: ns}
}

func getJSON(port int, path string, v any) error {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
