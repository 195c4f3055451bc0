package app

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/cli/render"
	"github.com/skiff-io/skiff/sidecar/shared/counters"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/test/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// A network of three sites as east's controller sees it: west linked to
// east (west dialled), north linked to west only; a link Secret of east's
// to a site that is down, and one whose token is broken.
func fixture() (*model.SiteStatus, []linkRow, time.Time) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	st := &model.SiteStatus{Site: "east", Version: "abc",
		Sites: []model.Site{
			{Name: "east", Links: []model.Link{{Peer: "west", Cost: 2}}},
			{Name: "west", Cost: 2, Links: []model.Link{{Peer: "east", Cost: 2}, {Peer: "north", Cost: 1}}},
			{Name: "north", Cost: 3, Links: []model.Link{{Peer: "west", Cost: 1}}},
		},
		Services: []model.StatusService{
			{Name: "backend:8080", Protocol: "http", Routing: "balanced", Ready: 2, Remote: []model.RemoteSite{{Site: "west", Cost: 2, Endpoints: 1}, {Site: "north", Cost: 3, Endpoints: 3}}},
			{Name: "db:5432", Protocol: "tcp", Routing: "closest", Remote: []model.RemoteSite{{Site: "north", Cost: 3, Endpoints: 1}}},
			{Name: "events:80", Protocol: "http", Routing: "multicast", Ready: 1},
		},
		Truncated: 2,
	}
	links := []linkRow{
		{Name: "link-to-south", Peer: "south", Cost: 1, State: "down", Since: now.Add(-3 * time.Hour)},
		{Name: "link-to-x", Cost: 1, State: "invalid: token: bad signature", Since: now.Add(-90 * time.Second)},
	}
	return st, links, now
}

// xdsFixture is what status makes of the controller's /status in
// testdata/controller-status.json: six clients, two refusing a type, a
// sidecar whose redirection is lost.
func xdsFixture(t *testing.T) *xdsReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "controller-status.json"))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := decodeNodes(b)
	if err != nil {
		t.Fatal(err)
	}
	r := xdsOf(nodes)
	return &r
}

func TestGoldenTables(t *testing.T) {
	st, links, now := fixture()
	report := siteReport{Site: st.Site, Namespace: "shop", Services: st.Services, TruncatedServices: st.Truncated,
		Components: []componentState{{Name: "controller", Kind: "Deployment", Ready: 1, Desired: 1}, {Name: "gateway", Kind: "Deployment", Ready: 1, Desired: 2},
			{Name: "injector", Kind: "Deployment", Missing: true}},
		Links: peerLinks(st, links),
		Warnings: []event{{Time: now.Add(-5 * time.Minute), Object: "Service/web", Reason: "InvalidExposure",
			Message: "annotation skiff.io/routing: \"multicast\": multicast is not served for tcp\n  (use balanced or closest)"}},
	}
	sample := counters.NewSample()
	sample.Peers["west"] = counters.PeerCounters{BytesSent: 1536000, BytesReceived: 2048, UpSince: float64(now.Add(-3 * time.Hour).Unix())}
	sample.Peers["south"] = counters.PeerCounters{UpSince: float64(now.Unix())} // down in the view: no time shown
	addBytes(report.Links, sample)
	report.XDS = xdsFixture(t)
	unknown := report
	unknown.XDS = &xdsReport{Error: "no running controller pod in namespace shop"}
	// A Linux site: its gateway only, whose view says nothing of xDS.
	linux := report
	linux.Namespace, linux.XDS, linux.Warnings = "", nil, nil
	linux.Components = []componentState{{Name: "gateway", Kind: "process at 127.0.0.1:15090", Ready: 1, Desired: 1}}
	for name, tables := range map[string][]render.Table{
		"status":             siteTables(report, now),
		"status-xds-unknown": siteTables(unknown, now),
		"status-linux":       siteTables(linux, now),
		"network-status":     networkTables(network(st)),
		"link-list":          {linkTable(links, now)},
		"link-list-none":     {linkTable(nil, now)},
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := render.Tables(&b, tables...); err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, filepath.Join("testdata", name+".golden"), b.String(), *update)
		})
	}
	t.Run("network-status-dot", func(t *testing.T) {
		var b bytes.Buffer
		if err := render.Dot(&b, st.Site, st.Sites); err != nil {
			t.Fatal(err)
		}
		testutil.Golden(t, filepath.Join("testdata", "network-status.dot"), b.String(), *update)
	})
	t.Run("status-json", func(t *testing.T) {
		var b bytes.Buffer
		if err := render.Data(&b, "json", report); err != nil {
			t.Fatal(err)
		}
		testutil.Golden(t, filepath.Join("testdata", "status.json"), b.String(), *update)
	})
}

// Flags stand anywhere among the arguments, as kubectl's do; "--" ends
// them.
func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cost := fs.Int("cost", 1, "")
	ns := fs.String("n", "", "")
	pos, err := parseInterspersed(fs, []string{"a.yaml", "--cost", "3", "b", "-n", "west", "--", "-c"})
	if err != nil || *cost != 3 || *ns != "west" || strings.Join(pos, ",") != "a.yaml,b,-c" {
		t.Errorf("got %v %d %q %v", pos, *cost, *ns, err)
	}
}

// The command line's mistakes exit 1 with what is wrong and the usage;
// help exits 0. None of these reach a cluster.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{nil, 0, ""},
		{[]string{"help"}, 0, ""},
		{[]string{"link", "create", "--help"}, 0, ""},
		{[]string{"frobnicate"}, 1, `unknown command "frobnicate"`},
		{[]string{"link"}, 1, `unknown command "link"`},
		{[]string{"link", "create"}, 1, "link create takes FILE"},
		{[]string{"link", "delete", "a", "b"}, 1, "link delete takes NAME"},
		{[]string{"status", "--bogus"}, 1, "flag provided but not defined: -bogus"},
		{[]string{"status", "-o", "xml"}, 1, `unknown output format "xml": use table, json, yaml`},
		{[]string{"network", "status", "-o", "svg"}, 1, `unknown output format "svg": use table, json, yaml, dot`},
		{[]string{"token", "create", "t.yaml", "--uses", "0"}, 1, "--uses 0: want a whole number >= 1"},
	} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), "skiff", tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.err) {
			t.Errorf("skiff %q: exit %d, stderr %q; want exit %d with %q", tc.args, code, errOut.String(), tc.code, tc.err)
		}
		if tc.code == 0 && out.Len() == 0 {
			t.Errorf("skiff %q printed no help", tc.args)
		}
	}
}
