package linux_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/skiff-io/skiff/test/testutil"
)

// The controller's console in a real browser: three Linux sites (west and
// north linked to east and serving web, which east routes closest), east's
// and north's controllers serving their consoles, headless Chromium driven
// with chromedp. Asserted from east's page: three sites, the two links up
// with their costs, web served by west and north; under a load of requests
// to east's web, traffic on the east-west link and none on east-north, and
// web's requests from east going to west when it is selected. From
// north's page, the same load on the east-west link, a link between two
// other sites (from the traffic reports east's gateway floods). Then
// north's gateway is killed and its link turns down on east's page within
// the 5 s the console promises, with an event saying so.
// Screenshots go to the test's artifact directory (go test -artifacts);
// SKIFF_CONSOLE_SCREENSHOT=FILE also writes the first one there (the one
// in docs/).
func TestConsoleInABrowser(t *testing.T) {
	ctx := testutil.Chromium(t)
	bin := buildRouter(t)
	ctl := filepath.Join(filepath.Dir(bin), "skiff-controller")
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	linkPort, webListen, gwAdmin, xdsPort, ctlAdmin := port(), port(), port(), port(), port()

	eastFile := filepath.Join(dir, "east.yaml")
	write(t, eastFile, fmt.Sprintf(`name: east
dataDir: ./east-data
linkAccess:
  bind: 127.0.0.1:%d
listeners:
  - {address: web, host: 127.0.0.1, port: %d, protocol: http}
routing:
  web: closest
`, linkPort, webListen))
	start(t, bin, "gateway", "--site-file", eastFile, "--controller", fmt.Sprintf("127.0.0.1:%d", xdsPort),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", gwAdmin), "--health-probe-bind-address", "0")
	start(t, ctl, "--site-file", eastFile, "--gateway-admin", fmt.Sprintf("127.0.0.1:%d", gwAdmin),
		"--xds-bind-address", fmt.Sprintf("127.0.0.1:%d", xdsPort), "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ctlAdmin), "--health-probe-bind-address", "0")
	gateways := map[string]*proc{}
	northAdmin, northXDS, northCtl := port(), port(), port()
	for i, name := range []string{"west", "north"} {
		tok := filepath.Join(dir, name+"-token.yaml")
		if out, err := runCmd(bin, "token", "issue", "--site-file", eastFile, "--out", tok); err != nil {
			t.Fatalf("token issue: %v\n%s", err, out)
		}
		e := port()
		start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", e), "--name", name)
		file := filepath.Join(dir, name+".yaml")
		write(t, file, fmt.Sprintf(`name: %s
dataDir: ./%s-data
links:
  - {token: %s, cost: %d}
connectors:
  - {address: web, host: 127.0.0.1, port: %d, protocol: http}
`, name, name, tok, i+2, e))
		if name == "west" {
			gateways[name] = start(t, bin, "gateway", "--site-file", file, "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
			continue
		}
		gateways[name] = start(t, bin, "gateway", "--site-file", file, "--controller", fmt.Sprintf("127.0.0.1:%d", northXDS),
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", northAdmin), "--health-probe-bind-address", "0")
		start(t, ctl, "--site-file", file, "--gateway-admin", fmt.Sprintf("127.0.0.1:%d", northAdmin),
			"--xds-bind-address", fmt.Sprintf("127.0.0.1:%d", northXDS), "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", northCtl), "--health-probe-bind-address", "0")
	}

	url := fmt.Sprintf("http://127.0.0.1:%d/console/", ctlAdmin)
	testutil.Eventually(t, 20*time.Second, "the controller serves the console", func() error {
		_, err := getOne(url)
		return err
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	page := func(expr string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	}
	// What the page shows: its graph's sites and links, its counts line,
	// and the row of web in its services table.
	const shown = `(() => { const c = window.skiffConsole; if (!c || !c.snapshot) return "no snapshot";
		const nodes = c.cy.nodes().map(n => n.data("name")).sort().join(",");
		const edges = c.cy.edges().map(e => e.data("a") + "-" + e.data("b") + ":" + e.data("state") + ":" + e.data("label")).sort().join(",");
		const row = [...document.querySelectorAll("#service-rows tr")].map(r => r.innerText.replace(/\s+/g, " ")).join("|");
		return nodes + " / " + edges + " / " + document.getElementById("counts").textContent + " / " + row + " / " + document.getElementById("live").textContent; })()`
	testutil.Eventually(t, 30*time.Second, "the page shows three sites, two links up and web served by all", func() error {
		got, err := page(shown)
		if err != nil {
			return err
		}
		for _, want := range []string{"east,north,west / ", "east-north:up:cost 3", "east-west:up:cost 2", "3 sites, 2 links up, 0 down", "1 service, 1 xDS client",
			"web http closest", "west (1, cost 2), north (1, cost 3)", " / live"} {
			if !strings.Contains(got, want) {
				return fmt.Errorf("page shows %q, lacking %q", got, want)
			}
		}
		return nil
	})

	// A load through east to web (closest: west) shows on the east-west
	// link, not on east-north. Bounded: 200,000 requests, 60 s, or until
	// the page shows it.
	loadCtx, stopLoad := context.WithTimeout(t.Context(), time.Minute)
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		for i := 0; i < 200000 && loadCtx.Err() == nil; i++ {
			_, _ = getOne(fmt.Sprintf("http://127.0.0.1:%d/", webListen))
		}
	}()
	const traffic = `(() => { const c = window.skiffConsole; return c.cy.edges().map(e => e.data("a") + "-" + e.data("b") + ":" + e.data("busy") + ":" + e.data("label").replace(/\n/g, " ")).sort().join(",") })()`
	testutil.Eventually(t, 20*time.Second, "the page shows traffic on east-west and none on east-north", func() error {
		got, err := page(traffic)
		if err != nil {
			return err
		}
		if !strings.Contains(got, "east-north:0:cost 3") || !strings.Contains(got, "east-west:1:cost 2 out ") || !strings.Contains(got, "streams/s") {
			m, _ := getOne(fmt.Sprintf("http://127.0.0.1:%d/metrics", gwAdmin))
			var peer []string
			for _, l := range strings.Split(m, "\n") {
				if strings.HasPrefix(l, "skiff_peer_") || strings.HasPrefix(l, "skiff_http_requests_total") {
					peer = append(peer, l)
				}
			}
			return fmt.Errorf("edges: %q; east's counters: %v", got, peer)
		}
		t.Logf("edges under load: %s", got)
		return nil
	})
	// Selecting web shows where its traffic from east goes.
	testutil.Eventually(t, 20*time.Second, "web's row and its selection show its requests from east to west", func() error {
		got, err := page(`(() => { const tr = document.querySelector('#service-rows tr[data-name="web"]'); if (!tr) return "no row";
			if (!tr.classList.contains("selected")) tr.click();
			return tr.innerText.replace(/\s+/g, " ") + " / " + document.getElementById("flows").textContent })()`)
		if err != nil {
			return err
		}
		if !strings.Contains(got, "req/s / web from east: to west ") || strings.Contains(got, "to north") {
			return fmt.Errorf("page shows %q", got)
		}
		t.Logf("web selected: %s", got)
		return nil
	})
	screenshot(t, ctx, "network.png", os.Getenv("SKIFF_CONSOLE_SCREENSHOT"))
	otherSites(t, ctx, fmt.Sprintf("http://127.0.0.1:%d/console/", northCtl))
	stopLoad()
	<-loaded

	// North's gateway dies: its link is down on the page within 5 s.
	killed := time.Now()
	gateways["north"].Stop(t)
	testutil.Eventually(t, 5*time.Second, "the page shows the link to north down", func() error {
		got, err := page(shown)
		if err != nil {
			return err
		}
		if !strings.Contains(got, "east-north:down:cost 3 (down)") || !strings.Contains(got, "east-west:up") || !strings.Contains(got, "1 link up, 1 down") {
			return fmt.Errorf("page shows %q", got)
		}
		return nil
	})
	t.Logf("the page showed north's link down %v after its gateway was killed", time.Since(killed).Round(time.Millisecond))
	events, err := page(`document.getElementById("events").innerText`)
	if err != nil || !strings.Contains(events, "link east - north is down") {
		t.Errorf("events on the page: %q %v", events, err)
	}
	screenshot(t, ctx, "north-down.png", "")
}

// otherSites checks, from north's console at url, that the load through
// east shows on the east-west link, between two other sites, and where
// web's traffic from east goes.
func otherSites(t *testing.T, browser context.Context, url string) {
	ctx, cancel := chromedp.NewContext(browser) // a second tab
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	page := func(expr string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	}
	testutil.Eventually(t, 30*time.Second, "north's page shows the traffic on east-west and web's from east", func() error {
		got, err := page(`(() => { const c = window.skiffConsole; if (!c || !c.snapshot) return "no snapshot";
			const edges = c.cy.edges().map(e => e.data("a") + "-" + e.data("b") + ":" + e.data("busy") + ":" + e.data("label").replace(/\n/g, " ")).sort().join(",");
			const tr = document.querySelector('#service-rows tr[data-name="web"]');
			if (tr && !tr.classList.contains("selected")) tr.click();
			return edges + " / " + document.getElementById("flows").textContent })()`)
		if err != nil {
			return err
		}
		// West delivers east's requests: they are east's flow, not west's.
		if !strings.Contains(got, "east-west:1:cost 2 east→west ") || !strings.Contains(got, "web from east: to west ") || strings.Contains(got, "from west") {
			return fmt.Errorf("north's page shows %q", got)
		}
		t.Logf("north's page under load: %s", got)
		return nil
	})
	screenshot(t, ctx, "from-north.png", "")
}

// screenshot saves the page into the test's artifact directory, and into
// also when it is set.
func screenshot(t *testing.T, ctx context.Context, name, also string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	for _, path := range []string{filepath.Join(t.ArtifactDir(), name), also} {
		if path == "" {
			continue
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
