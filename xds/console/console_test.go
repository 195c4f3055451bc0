package console

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

func view(sites ...netview.DocumentSite) *netview.Document {
	return &netview.Document{Self: "east", Sites: sites}
}

func site(name string, cost int, links map[string]int) netview.DocumentSite {
	return netview.DocumentSite{Name: name, Cost: cost, Links: links}
}

// A link that leaves the view is drawn down, with an event, until
// LinkMemory has passed; one that comes back is up again, with an event;
// a site that becomes unreachable and one that refuses its table are
// events too. The first snapshot records no event (it is how things are,
// not a change).
func TestTracker(t *testing.T) {
	tr := newTracker()
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	full := view(site("east", 0, map[string]int{"west": 2, "north": 3}), site("west", 2, map[string]int{"east": 2}), site("north", 3, map[string]int{"east": 3}))
	s := tr.snapshot(Input{Site: "east", View: full}, t0)
	if len(s.Sites) != 3 || len(s.Links) != 2 || len(s.Events) != 0 {
		t.Fatalf("first snapshot: %+v", s)
	}
	if s.Links[0] != (Link{A: "east", B: "north", Cost: 3, State: "up", Since: t0}) {
		t.Errorf("link %+v", s.Links[0])
	}
	same := tr.snapshot(Input{Site: "east", View: full}, t0.Add(time.Second))
	if same.Version != s.Version {
		t.Errorf("nothing changed, yet the version did: %s -> %s", s.Version, same.Version)
	}

	// north goes: its link is down, north unreachable.
	gone := view(site("east", 0, map[string]int{"west": 2}), site("west", 2, map[string]int{"east": 2}))
	gone.Unreachable = []string{"north"}
	t1 := t0.Add(2 * time.Second)
	s = tr.snapshot(Input{Site: "east", View: gone, Rejections: []string{"sidecar~east~web-1"}}, t1)
	if s.Version == same.Version {
		t.Error("north left and the version stayed")
	}
	want := []Link{{A: "east", B: "north", Cost: 3, State: "down", Since: t1}, {A: "east", B: "west", Cost: 2, State: "up", Since: t0}}
	if len(s.Links) != 2 || s.Links[0] != want[0] || s.Links[1] != want[1] {
		t.Errorf("links %+v, want %+v", s.Links, want)
	}
	if s.Sites[2] != (Site{Name: "north"}) {
		t.Errorf("sites %+v: north should be there, unreachable", s.Sites)
	}
	kinds := map[string]bool{}
	for _, e := range s.Events {
		kinds[e.Kind] = true
	}
	for _, k := range []string{"link-down", "site-down", "nack"} {
		if !kinds[k] {
			t.Errorf("no %s event among %+v", k, s.Events)
		}
	}
	// The same rejection again is no new event.
	n := len(s.Events)
	s = tr.snapshot(Input{Site: "east", View: gone, Rejections: []string{"sidecar~east~web-1"}}, t1.Add(time.Second))
	if len(s.Events) != n {
		t.Errorf("a standing rejection made %d new events", len(s.Events)-n)
	}

	// north comes back: up again.
	s = tr.snapshot(Input{Site: "east", View: full}, t1.Add(time.Minute))
	if s.Links[0].State != "up" || s.Events[0].Kind != "site-up" && s.Events[0].Kind != "link-up" {
		t.Errorf("after north came back: links %+v, newest event %+v", s.Links, s.Events[0])
	}

	// Down longer than LinkMemory: forgotten.
	tr.snapshot(Input{Site: "east", View: gone}, t1.Add(2*time.Minute))
	s = tr.snapshot(Input{Site: "east", View: gone}, t1.Add(2*time.Minute+LinkMemory+time.Second))
	if len(s.Links) != 1 {
		t.Errorf("a link down for longer than %v is still drawn: %+v", LinkMemory, s.Links)
	}
}

// Services: this site first when it has ready endpoints, then the others;
// at most MaxServices, the rest counted. Events are bounded too.
// A sidecar reporting its redirection lost is an event, once, and one
// reporting it back is another; one already lost at the first snapshot
// is not an event (it is how things are), nor is one that was never
// lost. A sidecar that leaves (its new stream not yet registered) and
// comes back still lost makes no new event; one gone for longer than
// LinkMemory is forgotten.
func TestTrackerRedirect(t *testing.T) {
	tr := newTracker()
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	in := func(rs map[string]model.Redirect) Input {
		return Input{Site: "east", View: view(site("east", 0, nil)), Redirects: rs}
	}
	const web, api, old = "sidecar~east~shop/web-1", "sidecar~east~shop/api-1", "sidecar~east~shop/old-1"
	step := 0
	snap := func(rs map[string]model.Redirect) []Event {
		t.Helper()
		step++
		before := len(tr.events)
		tr.snapshot(in(rs), t0.Add(time.Duration(step)*time.Second))
		return tr.events[before:]
	}
	kinds := func(evs []Event) string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Kind+" "+strings.Fields(e.Message)[0])
		}
		return strings.Join(out, ", ")
	}
	for _, tc := range []struct {
		what string
		rs   map[string]model.Redirect
		want string
	}{
		{"first snapshot: old is lost already", map[string]model.Redirect{old: model.RedirectLost, web: model.RedirectVerified}, ""},
		{"old still lost, api joins verified", map[string]model.Redirect{old: model.RedirectLost, web: model.RedirectVerified, api: model.RedirectVerified}, ""},
		{"web and api lose it", map[string]model.Redirect{old: model.RedirectLost, web: model.RedirectLost, api: model.RedirectLost},
			"redirect-lost " + api + ", redirect-lost " + web},
		{"still lost", map[string]model.Redirect{old: model.RedirectLost, web: model.RedirectLost, api: model.RedirectLost}, ""},
		{"web between its streams", map[string]model.Redirect{old: model.RedirectLost, api: model.RedirectLost}, ""},
		{"web back, still lost", map[string]model.Redirect{old: model.RedirectLost, web: model.RedirectLost, api: model.RedirectLost}, ""},
		{"web restored, old too", map[string]model.Redirect{old: model.RedirectVerified, web: model.RedirectVerified, api: model.RedirectLost},
			"redirect-restored " + old + ", redirect-restored " + web},
		{"web reports none (no check any more)", map[string]model.Redirect{api: model.RedirectLost}, ""},
	} {
		if got := kinds(snap(tc.rs)); got != tc.want {
			t.Errorf("%s: events %q, want %q", tc.what, got, tc.want)
		}
	}
	// api leaves for longer than LinkMemory: forgotten, and lost again
	// when it comes back lost.
	tr.snapshot(in(nil), t0.Add(time.Minute+LinkMemory))
	if _, ok := tr.lost[api]; ok {
		t.Errorf("%s still remembered lost after %v away", api, LinkMemory)
	}
	step = int((time.Minute + LinkMemory) / time.Second)
	if got, want := kinds(snap(map[string]model.Redirect{api: model.RedirectLost})), "redirect-lost "+api; got != want {
		t.Errorf("api back lost after it was forgotten: events %q, want %q", got, want)
	}
}

func TestTrackerBounds(t *testing.T) {
	tr := newTracker()
	tb := &model.Table{Site: "east"}
	tb.Services = append(tb.Services, model.Service{Address: "web", Port: 80, Protocol: model.HTTP, Routing: model.Closest,
		Endpoints: []model.Endpoint{{IP: "10.0.0.1", Port: 80, Ready: true}, {IP: "10.0.0.2", Port: 80}},
		Remote:    []model.RemoteSite{{Site: "west", Cost: 2, Endpoints: 3}}})
	for i := 0; i < MaxServices+5; i++ {
		tb.Services = append(tb.Services, model.Service{Address: "a", Port: i + 1})
	}
	s := tr.snapshot(Input{Site: "east", Table: tb}, time.Now())
	if len(s.Services) != MaxServices || s.Truncated != 6 {
		t.Errorf("%d services, %d truncated", len(s.Services), s.Truncated)
	}
	web := s.Services[0]
	if web.Name != "web:80" || web.Protocol != "http" || web.Routing != "closest" || len(web.Sites) != 2 ||
		web.Sites[0] != (model.RemoteSite{Site: "east", Endpoints: 1}) || web.Sites[1].Site != "west" {
		t.Errorf("web: %+v", web)
	}
	for i := 0; i < MaxEvents*2; i++ {
		tr.event(time.Now(), "nack", "x")
	}
	if len(tr.events) != MaxEvents {
		t.Errorf("%d events kept, want %d", len(tr.events), MaxEvents)
	}
}

// The page's files, the snapshot, and the event stream: the latest
// snapshot at once, the next one on a change; a page that goes away ends
// its stream.
func TestHandler(t *testing.T) {
	var mu sync.Mutex
	in := Input{Site: "east", View: view(site("east", 0, nil))}
	get := func() Input { mu.Lock(); defer mu.Unlock(); return in }
	f := NewFeed(get, nil, testr.New(t))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	srv := httptest.NewServer(f.Handler("/console/"))
	defer srv.Close()

	for path, want := range map[string]string{"/console/": "<title>skiff console</title>", "/console/console.js": "skiffConsole", "/console/console.css": "#graph"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: %d, CSP %q, body lacks %q", path, resp.StatusCode, resp.Header.Get("Content-Security-Policy"), want)
		}
	}

	resp, err := http.Get(srv.URL + "/console/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("events Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	next := func() Snapshot {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var s Snapshot
				if err := json.Unmarshal([]byte(data), &s); err != nil {
					t.Fatal(err)
				}
				return s
			}
		}
	}
	first := next()
	if first.Site != "east" || len(first.Sites) != 1 {
		t.Errorf("first snapshot %+v", first)
	}
	mu.Lock()
	in = Input{Site: "east", View: view(site("east", 0, map[string]int{"west": 1}), site("west", 1, map[string]int{"east": 1}))}
	mu.Unlock()
	second := next()
	if len(second.Links) != 1 || second.Links[0].State != "up" || second.Version == first.Version {
		t.Errorf("after the change: %+v", second)
	}
	b, err := http.Get(srv.URL + "/console/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	var latest Snapshot
	if err := json.NewDecoder(b.Body).Decode(&latest); err != nil || latest.Version != second.Version {
		t.Errorf("/console/snapshot: %v %s, want version %s", err, latest.Version, second.Version)
	}
	b.Body.Close()
}
