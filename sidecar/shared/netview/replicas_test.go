package netview

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// routerRec is a record of gateway router of site.
func routerRec(site, router string, seq uint64, links, addresses map[string]int) Record {
	r := rec(site, 10, seq, links, addresses)
	r.Router = router
	return r
}

// A site with two gateways (east/e1, east/e2), linked to each other at
// cost 0; west's one gateway links to e1 only. Every gateway routes for
// the site: e2 reaches west through its sibling, at the cost of the link;
// west reaches east at its nearest gateway and counts east's endpoints
// once, not once per gateway. When e1 goes and west links to e2 instead,
// the routes follow.
func TestReplicas(t *testing.T) {
	e1 := routerRec("east", "e1", 1, map[string]int{"east/e2": 0, "west/w": 2}, map[string]int{"backend:8080": 3})
	e2 := routerRec("east", "e2", 1, map[string]int{"east/e1": 0}, map[string]int{"backend:8080": 3})
	w := routerRec("west", "w", 1, map[string]int{"east/e1": 2}, map[string]int{"db:5432": 1})

	// e2's view.
	db := newDB("east", 10, WithRouter("e2"))
	db.SetLocal(e2.Links, e2.Addresses)
	for _, r := range []Record{e1, w} {
		if !apply(db, r) {
			t.Fatalf("record of %s refused", r.Node())
		}
	}
	v := db.View()
	if got, want := v.Routes["west"], (Route{Site: "west", NextHop: "east/e1", Cost: 2, Hops: 2, Router: "w"}); got != want {
		t.Errorf("e2's route to west = %+v, want %+v (through its sibling e1)", got, want)
	}
	if nh, ok := v.NextHopToNode("east/e1"); !ok || nh != "east/e1" {
		t.Errorf("NextHopToNode(east/e1) = %q, %v", nh, ok)
	}
	if diff := cmp.Diff(v.Addresses["backend:8080"], []Target{{Site: "east", Endpoints: 3, Cost: 0}}); diff != "" {
		t.Errorf("east's own address (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(v.Routers, map[string][]string{"east": {"e1", "e2"}, "west": {"w"}}); diff != "" {
		t.Errorf("Routers (-got +want):\n%s", diff)
	}

	// west's view: east once, at its nearest gateway.
	wdb := newDB("west", 10, WithRouter("w"))
	wdb.SetLocal(w.Links, w.Addresses)
	apply(wdb, e1)
	apply(wdb, e2)
	wv := wdb.View()
	if got, want := wv.Routes["east"], (Route{Site: "east", NextHop: "east/e1", Cost: 2, Hops: 1, Router: "e1"}); got != want {
		t.Errorf("west's route to east = %+v, want %+v", got, want)
	}
	if diff := cmp.Diff(wv.Addresses["backend:8080"], []Target{{Site: "east", Endpoints: 3, Cost: 2}}); diff != "" {
		t.Errorf("east's endpoints counted per gateway (-got +want):\n%s", diff)
	}
	doc := wdb.Document()
	if i := slices.IndexFunc(doc.Sites, func(s DocumentSite) bool { return s.Name == "east" }); i < 0 ||
		!slices.Equal(doc.Sites[i].Routers, []string{"e1", "e2"}) || doc.Sites[i].Links["west"] != 2 || doc.Sites[i].NextHop != "east" {
		t.Errorf("document of east: %+v", doc.Sites)
	}

	// e1 goes (its links drop out of e2's and west's records); west
	// links to e2. e1's record is still held until it ages out, but no
	// path leads to it.
	e2b := routerRec("east", "e2", 2, map[string]int{"west/w": 2}, map[string]int{"backend:8080": 3})
	wb := routerRec("west", "w", 2, map[string]int{"east/e2": 2}, map[string]int{"db:5432": 1})
	apply(wdb, e2b)
	wdb.SetLocal(wb.Links, wb.Addresses)
	wv = wdb.View()
	if got := wv.Routes["east"]; got.NextHop != "east/e2" || got.Router != "e2" {
		t.Errorf("after e1 left, west's route to east = %+v, want via east/e2", got)
	}
	if !slices.Equal(wv.UnreachableNodes, []string{"east/e1"}) || len(wv.Unreachable) != 0 {
		t.Errorf("unreachable nodes %v, sites %v; want [east/e1] and no site", wv.UnreachableNodes, wv.Unreachable)
	}
	if dropped := wdb.Expire(0); !slices.Contains(dropped, "east/e1") {
		t.Errorf("Expire dropped %v, want east/e1 among them", dropped)
	}
}

// Records name links to nodes: a sibling link may cost 0, a link to
// another site may not; a link to itself or to a bad router name is
// refused.
func TestRecordNodeLinks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		links map[string]int
		ok    bool
	}{
		{"sibling at 0", map[string]int{"east/e2": 0}, true},
		{"other site at 0", map[string]int{"west/w": 0}, false},
		{"other site at 1", map[string]int{"west/w": 1}, true},
		{"site without router", map[string]int{"west": 1}, true},
		{"itself", map[string]int{"east/e1": 0}, false},
		{"bad router", map[string]int{"west/W_": 1}, false},
		{"bad site", map[string]int{"We st/w": 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(routerRec("east", "e1", 1, tc.links, nil))
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidRecord)) {
				t.Errorf("Encode = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// A sidecar's local record is its gateway's: it takes the gateway's
// router name, and a held record of that node goes.
func TestSetLocalRouter(t *testing.T) {
	db := newDB("east", 10)
	e1 := routerRec("east", "e1", 1, nil, map[string]int{"x": 1})
	if !apply(db, e1) {
		t.Fatal("sibling record refused")
	}
	if !db.SetLocalRouter("e1") || db.SetLocalRouter("e1") {
		t.Fatal("SetLocalRouter should report one change")
	}
	recs := db.Records()
	if len(recs) != 1 || recs[0].Node() != "east/e1" || recs[0].Addresses["x"] != 1 {
		t.Errorf("records %+v, want the gateway's held record as the local one, alone", recs)
	}
}

// Two gateways of a site that both link to west, and to each other at
// cost 0: each routes west over its own link, never through the other
// (with the next hop ranked before the hop count, each picked its
// sibling, a loop the e2e's rolling upgrade ran into).
func TestSiblingsNoLoop(t *testing.T) {
	e1 := routerRec("east", "e1", 1, map[string]int{"east/e2": 0, "west/w": 1}, nil)
	e2 := routerRec("east", "e2", 1, map[string]int{"east/e1": 0, "west/w": 1}, nil)
	w := routerRec("west", "w", 1, map[string]int{"east/e1": 1, "east/e2": 1}, map[string]int{"db:5432": 1})
	for _, self := range []Record{e1, e2} {
		db := newDB("east", 10, WithRouter(self.Router))
		db.SetLocal(self.Links, self.Addresses)
		for _, r := range []Record{e1, e2, w} {
			if r.Node() != self.Node() {
				apply(db, r)
			}
		}
		if got := db.View().Routes["west"]; got.NextHop != "west/w" || got.Hops != 1 {
			t.Errorf("%s's route to west = %+v, want its own link", self.Node(), got)
		}
	}
}
