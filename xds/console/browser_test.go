package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/test/testutil"
)

// The page at the size the console is built for, in headless Chromium:
// 50 sites in a chain of links and 10,000 addresses. It draws every site
// and link, counts every service, draws 200 rows and finds any address
// with the filter; the time the page took to apply the snapshot is
// logged (not asserted).
func TestConsoleAtScale(t *testing.T) {
	const sites, services = 50, 10000
	doc := &netview.Document{Self: "s00"}
	for i := 0; i < sites; i++ {
		ds := netview.DocumentSite{Name: fmt.Sprintf("s%02d", i), Cost: i, Links: map[string]int{}}
		if i > 0 {
			ds.Links[fmt.Sprintf("s%02d", i-1)] = 1
		}
		if i < sites-1 {
			ds.Links[fmt.Sprintf("s%02d", i+1)] = 1
		}
		doc.Sites = append(doc.Sites, ds)
	}
	tb := &model.Table{Site: "s00"}
	for i := 0; i < services; i++ {
		tb.Services = append(tb.Services, model.Service{Address: "svc-" + strconv.Itoa(i), Port: 8080, Protocol: model.HTTP, Routing: model.Balanced,
			Remote: []model.RemoteSite{{Site: fmt.Sprintf("s%02d", 1+i%(sites-1)), Cost: 1 + i%(sites-1), Endpoints: 2}}})
	}
	f := NewFeed(func() Input { return Input{Site: "s00", Table: tb, View: doc} }, nil, testr.New(t))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	srv := httptest.NewServer(f.Handler("/console/"))
	t.Cleanup(srv.Close) // after the browser's cleanups (registered below) end its event stream
	bctx := testutil.Chromium(t)

	start := time.Now()
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/console/")); err != nil {
		t.Fatal(err)
	}
	eval := func(expr string) string {
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		out, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			return "error: " + err.Error()
		}
		return out
	}
	testutil.Eventually(t, 60*time.Second, "the page draws 50 sites, 49 links and counts 10,000 services", func() error {
		got := eval(`(() => { const c = window.skiffConsole; if (!c || !c.snapshot) return "none";
			return c.cy.nodes().length + "/" + c.cy.edges().length + "/" + document.querySelectorAll("#service-rows tr").length + "/" + document.getElementById("counts").textContent + "/" + document.getElementById("service-more").textContent })()`)
		if !strings.HasPrefix(got, "50/49/200/50 sites, 49 links up, 0 down, 10000 services") || !strings.Contains(got, "9800 more") {
			return fmt.Errorf("page: %s", got)
		}
		return nil
	})
	t.Logf("50 sites and 10,000 services drawn %v after navigating", time.Since(start).Round(time.Millisecond))
	got := eval(`(() => { const f = document.getElementById("filter"); f.value = "svc-9999"; f.dispatchEvent(new Event("input"));
		return [...document.querySelectorAll("#service-rows tr")].map(r => r.dataset.name).join(",") })()`)
	if got != "svc-9999:8080" {
		t.Errorf("filter svc-9999: rows %q", got)
	}
}
