// Package console is the controller's read-only web console: a page that
// draws the network as its controller sees it (sites, links and their
// state, addresses and the sites that serve them, recent events) and
// keeps it live with Server-Sent Events. It holds no secret and changes
// nothing: everything it shows is the controller's service table and its
// gateway's view of the network, which /status serves too.
//
// The page is a bundle built from web/ (cytoscape.js draws the graph) by
// hack/gen-console.sh into dist/, committed and embedded; `make
// verify-generated` checks that dist/ is what web/ builds.
package console

import (
	"cmp"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

//go:embed dist
var dist embed.FS

// Assets are the page's files (index.html, console.js, console.css).
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time
	}
	return sub
}

// Snapshot is what the page draws, sent whole on every change.
type Snapshot struct {
	Site     string    `json:"site"`
	Version  string    `json:"version"` // changes with anything else in the snapshot
	Time     time.Time `json:"time"`
	Sites    []Site    `json:"sites"`
	Links    []Link    `json:"links"`
	Services []Service `json:"services"`
	// Truncated is how many services were left out (MaxServices).
	Truncated int     `json:"truncated,omitempty"`
	Events    []Event `json:"events"`
	Clients   Clients `json:"clients"`
}

// Site is a site the view holds: reachable with its path cost, or known
// and unreachable (its record is there, no path is).
type Site struct {
	Name      string `json:"name"`
	Cost      int    `json:"cost"`
	Reachable bool   `json:"reachable"`
}

// Link is a link between two sites (A < B), up when the view has it; a
// link seen before and gone since is down until LinkMemory has passed.
type Link struct {
	A     string    `json:"a"`
	B     string    `json:"b"`
	Cost  int       `json:"cost"`
	State string    `json:"state"` // up or down
	Since time.Time `json:"since"`
}

// Service is an address of the service table and the sites that serve it
// (this site first, cost 0, when it has ready endpoints).
type Service struct {
	Name     string             `json:"name"`
	Protocol string             `json:"protocol"`
	Routing  string             `json:"routing"`
	Sites    []model.RemoteSite `json:"sites"`
}

// Event is something that changed: a link up or down, a site appearing or
// leaving, a client refusing a table (NACK), a sidecar reporting its
// redirection lost or restored.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // link-up, link-down, site-up, site-down, nack, redirect-lost, redirect-restored
	Message string    `json:"message"`
}

// Clients counts the controller's xDS clients and those that refused the
// table they were last sent.
type Clients struct {
	Connected int `json:"connected"`
	Rejecting int `json:"rejecting"`
}

// Bounds of a snapshot.
const (
	// MaxServices bounds the services sent (the page filters them).
	MaxServices = 10000
	// MaxEvents is how many recent events are kept.
	MaxEvents = 100
	// LinkMemory is how long a link that went down stays drawn, down.
	LinkMemory = 10 * time.Minute
)

// Input is what a snapshot is made of: the controller's table and view
// and its xDS clients (how many, how many rejecting).
type Input struct {
	Site    string
	Table   *model.Table
	View    *netview.Document
	Clients Clients
	// Rejections name the clients refusing their table, for events.
	Rejections []string
	// Redirects are the redirect states the clients report, by node ID
	// (those reporting none left out), for events.
	Redirects map[string]model.Redirect
}

// tracker remembers what the last snapshots held, to tell links that went
// down and to record events. It is not safe for concurrent use: the Feed
// owns it.
type tracker struct {
	links    map[[2]string]Link
	sites    map[string]bool // reachable, by name
	rejected map[string]bool
	// lost holds the clients that last reported their redirection lost,
	// with when they last did.
	lost   map[string]time.Time
	events []Event
	first  bool
}

func newTracker() *tracker {
	return &tracker{links: map[[2]string]Link{}, sites: map[string]bool{}, rejected: map[string]bool{}, lost: map[string]time.Time{}, first: true}
}

// snapshot makes the snapshot of in at now, updating what t remembers.
func (t *tracker) snapshot(in Input, now time.Time) Snapshot {
	s := Snapshot{Site: in.Site, Time: now, Clients: in.Clients}
	s.Sites = t.sitesOf(in, now)
	s.Links = t.linksOf(in, now)
	for _, name := range in.Rejections {
		if !t.rejected[name] {
			t.event(now, "nack", fmt.Sprintf("%s refused the service table", name))
		}
	}
	t.rejected = map[string]bool{}
	for _, name := range in.Rejections {
		t.rejected[name] = true
	}
	t.redirectsOf(in, now)
	if in.Table != nil {
		for i := range in.Table.Services {
			if len(s.Services) == MaxServices {
				s.Truncated++
				continue
			}
			sv := &in.Table.Services[i]
			out := Service{Name: sv.NetworkName(), Protocol: string(sv.Protocol), Routing: string(sv.Routing)}
			if r := sv.ReadyEndpoints(); r > 0 {
				out.Sites = append(out.Sites, model.RemoteSite{Site: in.Site, Endpoints: r})
			}
			out.Sites = append(out.Sites, sv.Remote...)
			s.Services = append(s.Services, out)
		}
	}
	t.first = false
	s.Events = slices.Clone(t.events)
	slices.Reverse(s.Events) // newest first
	s.Version = version(s)
	return s
}

func (t *tracker) sitesOf(in Input, now time.Time) []Site {
	var out []Site
	seen := map[string]bool{}
	if in.View != nil {
		for _, ds := range in.View.Sites {
			out = append(out, Site{Name: ds.Name, Cost: ds.Cost, Reachable: true})
			seen[ds.Name] = true
		}
		for _, name := range in.View.Unreachable {
			if !seen[name] {
				out = append(out, Site{Name: name})
				seen[name] = false
			}
		}
	}
	if len(out) == 0 {
		out = []Site{{Name: in.Site, Reachable: true}}
		seen[in.Site] = true
	}
	for name, reachable := range seen {
		if was, ok := t.sites[name]; (!ok || !was) && reachable && !t.first && name != in.Site {
			t.event(now, "site-up", fmt.Sprintf("site %s is reachable", name))
		}
		if was := t.sites[name]; was && !reachable {
			t.event(now, "site-down", fmt.Sprintf("site %s is unreachable", name))
		}
	}
	for name, was := range t.sites {
		if _, ok := seen[name]; !ok && was {
			t.event(now, "site-down", fmt.Sprintf("site %s left the network", name))
		}
	}
	t.sites = seen
	return out
}

// redirectsOf records the changes of the clients' redirect states: a
// client reporting its redirection lost (redirect-lost; not for those the
// first snapshot finds lost), and one that reported it lost reporting it
// verified (redirect-restored). A client that reported it lost and is gone
// is remembered for LinkMemory: its sidecar reports each change on a new
// stream, and the console may look between the old stream and the new.
func (t *tracker) redirectsOf(in Input, now time.Time) {
	for _, id := range slices.Sorted(maps.Keys(in.Redirects)) {
		_, wasLost := t.lost[id]
		switch in.Redirects[id] {
		case model.RedirectLost:
			if !wasLost && !t.first {
				t.event(now, "redirect-lost", fmt.Sprintf("%s lost its redirection: its pod's connections bypass the sidecar", id))
			}
			t.lost[id] = now
		case model.RedirectVerified:
			if wasLost {
				t.event(now, "redirect-restored", fmt.Sprintf("%s has its redirection back", id))
			}
			delete(t.lost, id)
		}
	}
	for id, seen := range t.lost {
		if _, ok := in.Redirects[id]; !ok && now.Sub(seen) > LinkMemory {
			delete(t.lost, id)
		}
	}
}

func (t *tracker) linksOf(in Input, now time.Time) []Link {
	up := map[[2]string]int{}
	if in.View != nil {
		for _, ds := range in.View.Sites {
			for peer, cost := range ds.Links {
				k := pair(ds.Name, peer)
				if c, ok := up[k]; !ok || cost < c {
					up[k] = cost
				}
			}
		}
	}
	for k, cost := range up {
		l, ok := t.links[k]
		if !ok || l.State != "up" {
			if !t.first {
				t.event(now, "link-up", fmt.Sprintf("link %s - %s is up", k[0], k[1]))
			}
			l = Link{A: k[0], B: k[1], State: "up", Since: now}
		}
		l.Cost = cost
		t.links[k] = l
	}
	for k, l := range t.links {
		if _, ok := up[k]; ok {
			continue
		}
		switch {
		case l.State == "up":
			t.event(now, "link-down", fmt.Sprintf("link %s - %s is down", k[0], k[1]))
			t.links[k] = Link{A: l.A, B: l.B, Cost: l.Cost, State: "down", Since: now}
		case now.Sub(l.Since) > LinkMemory:
			delete(t.links, k)
		}
	}
	out := make([]Link, 0, len(t.links))
	for _, l := range t.links {
		out = append(out, l)
	}
	slices.SortFunc(out, func(x, y Link) int { return cmp.Or(strings.Compare(x.A, y.A), strings.Compare(x.B, y.B)) })
	return out
}

func (t *tracker) event(now time.Time, kind, msg string) {
	t.events = append(t.events, Event{Time: now, Kind: kind, Message: msg})
	if len(t.events) > MaxEvents {
		t.events = t.events[len(t.events)-MaxEvents:]
	}
}

func pair(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// version is a short hash of what a snapshot shows, so that the page (and
// a test) can tell one state from the next; the time is left out.
func version(s Snapshot) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%+v|%+v|%d|%+v|%+v", s.Site, s.Sites, s.Links, s.Truncated, s.Clients, s.Events)
	for _, sv := range s.Services {
		fmt.Fprintf(h, "|%+v", sv)
	}
	return fmt.Sprintf("%016x", h.Sum64())
}
