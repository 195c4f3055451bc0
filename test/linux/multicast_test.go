package linux_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/sidecar/l7"
	"github.com/skiff-io/skiff/test/testutil"
)

// multicastSites is east, whose listener for events is a multicast
// address of mode, and west and north linked to east; each site has two
// counting endpoints of events, by site.
func multicastSites(t *testing.T, mode string) (*network, map[string][]*countingServer) {
	t.Helper()
	servers := map[string][]*countingServer{}
	spec := func(name, host string) *siteSpec {
		s := &siteSpec{name: name, host: host, protocols: map[string]string{"events": "http"},
			routing: map[string]string{"events": "multicast"}, multicast: map[string]string{"events": mode}}
		for i := range 2 {
			c := startCounting(t, fmt.Sprintf("%s-%d", name, i))
			servers[name] = append(servers[name], c)
			s.connectors = append(s.connectors, "events="+c.addr)
		}
		return s
	}
	east, west, north := spec("east", "127.0.0.1"), spec("west", "127.0.0.2"), spec("north", "127.0.0.3")
	east.accept, east.listeners = true, []string{"events"}
	west.links = []linkTo{{site: "east", cost: 1}}
	north.links = []linkTo{{site: "east", cost: 1}}
	n := newNetwork(t, east, west, north)
	n.waitEndpoints("east", "events", "west")
	n.waitEndpoints("east", "events", "north")
	return n, servers
}

// curlMulticast POSTs body to url with curl (extra flags first) and
// returns the status, the delivered/failed headers and the result.
func curlMulticast(t *testing.T, curl, url, body string, extra ...string) (code string, res l7.Result) {
	t.Helper()
	args := append(extra, "-sS", "--max-time", "30", "-D", "/dev/stderr", "-H", "Content-Type: text/plain", "--data-binary", body, url)
	cmd := exec.Command(curl, args...)
	var headers strings.Builder
	cmd.Stderr = &headers
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, headers.String())
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("curl %v: answer %q: %v", args, out, err)
	}
	h := strings.ToLower(headers.String())
	for _, want := range []string{fmt.Sprintf("skiff-multicast-delivered: %d", res.Delivered), fmt.Sprintf("skiff-multicast-failed: %d", res.Failed)} {
		if !strings.Contains(h, want) {
			t.Errorf("curl %v: headers lack %q:\n%s", args, want, headers.String())
		}
	}
	if f := strings.Fields(headers.String()); len(f) > 1 {
		code = f[1] // HTTP/1.1 200 OK, HTTP/2 200
	}
	return code, res
}

// curl POSTs to a multicast address of three sites with two endpoints
// each, over HTTP/1.1 and HTTP/2: every endpoint gets each request
// exactly once, the answer lists all six, and each other site got one
// copy over its link per request, not one per endpoint. With an endpoint
// down, the answer reports it and the five others still get theirs.
func TestCurlMulticast(t *testing.T) {
	curl := testutil.RequireTool(t, "curl")[0]
	n, servers := multicastSites(t, "aggregate")
	url := n.url("east", "events") + "orders"
	for i, flags := range [][]string{{"--http1.1"}, {"--http2-prior-knowledge"}} {
		body := fmt.Sprintf("order %d", i)
		code, res := curlMulticast(t, curl, url, body, flags...)
		if code != "200" || res.Delivered != 6 || res.Failed != 0 || len(res.Answers) != 6 {
			t.Fatalf("curl %v: %s, %+v; want 200 and six answers", flags, code, res)
		}
		for _, a := range res.Answers {
			if a.Status != 200 || a.Body != body {
				t.Errorf("curl %v: answer %+v; want 200 and the body echoed", flags, a)
			}
		}
	}
	for site, cs := range servers {
		for i, c := range cs {
			if got := c.hits.Load(); got != 2 {
				t.Errorf("%s endpoint %d got %d requests, want 2 (each exactly once)", site, i, got)
			}
		}
		if site == "east" {
			continue
		}
		copies := counterValue(t, n.sites[site].reg, "skiff_http_multicast_site_copies_total", map[string]string{"address": "events"})
		if copies != 2 {
			t.Errorf("%s got %v copies over its link for 2 requests, want 2 (one per request, not one per endpoint)", site, copies)
		}
	}

	servers["north"][1].srv.Close()
	code, res := curlMulticast(t, curl, url, "order 3", "--http1.1")
	if code != "200" || res.Delivered != 5 || res.Failed != 1 {
		t.Fatalf("one endpoint down: %s, %+v; want 200, five delivered, one failed", code, res)
	}
	for _, a := range res.Answers {
		if a.Status == 0 && (a.Site != "north" || a.Error == "") {
			t.Errorf("failed answer %+v; want north's, with why", a)
		}
	}
}

// curl to a multicast address of events: 202 and the counts, for POST
// only.
func TestCurlMulticastEvents(t *testing.T) {
	curl := testutil.RequireTool(t, "curl")[0]
	n, _ := multicastSites(t, "events")
	url := n.url("east", "events") + "orders"
	code, res := curlMulticast(t, curl, url, "created", "--http1.1")
	if code != "202" || res.Delivered != 6 || res.Failed != 0 {
		t.Fatalf("%s, %+v; want 202 and six delivered", code, res)
	}
	out, err := exec.Command(curl, "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", url).Output()
	if err != nil || string(out) != "405" {
		t.Errorf("GET: %q, %v; want 405", out, err)
	}
}
