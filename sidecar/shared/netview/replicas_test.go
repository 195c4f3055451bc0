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

// mirror signs r with its site's test key and mirrors it (DB.Mirror).
func mirror(t *testing.T, db *DB, r Record) bool {
	t.Helper()
	s, err := Sign(r, testKey(r.Site))
	if err != nil {
		t.Fatal(err)
	}
	ok, err := db.Mirror(s)
	if err != nil {
		t.Fatalf("Mirror(%s seq %d) = %v", r.Node(), r.Seq, err)
	}
	return ok
}

// A sidecar's local record is its gateway's. When the sidecar links to
// another gateway of its site (e1 drains, e2 takes over), the root moves
// there with e2's record in one step, and e1's record is held: the route
// to west through e1, and west's backend, never leave the view. A held
// record of e2 goes; older records of the root change nothing, nor do
// newer ones with the same content; a record of another site is refused.
func TestMirror(t *testing.T) {
	db := newDB("east", 10)
	e1 := routerRec("east", "e1", 1, map[string]int{"east/e2": 0, "west/w": 1}, nil)
	e2 := routerRec("east", "e2", 1, map[string]int{"east/e1": 0}, nil)
	w := routerRec("west", "w", 1, map[string]int{"east/e1": 1}, map[string]int{"backend": 2})
	if !mirror(t, db, e1) || !apply(db, w) || !apply(db, e2) {
		t.Fatal("records refused")
	}
	check := func(when, root string, held ...string) {
		t.Helper()
		var nodes []string
		for _, r := range db.Records() {
			nodes = append(nodes, r.Node())
		}
		want := append([]string{root}, held...)
		slices.Sort(want)
		if db.Local().Node() != root || !slices.Equal(nodes, want) {
			t.Errorf("%s: local %s, records %v; want local %s, records %v", when, db.Local().Node(), nodes, root, want)
		}
		if got := db.View().Addresses["backend"]; len(got) != 1 || got[0].Site != "west" || got[0].Endpoints != 2 {
			t.Errorf("%s: backend's targets %+v, want west's 2 endpoints", when, got)
		}
	}
	check("rooted at e1", "east/e1", "east/e2", "west/w")
	if !mirror(t, db, e2) {
		t.Fatal("Mirror(e2) reported no change")
	}
	check("moved to e2", "east/e2", "east/e1", "west/w")
	if mirror(t, db, e2) {
		t.Error("the same record again reported a change")
	}
	e2.Seq = 2
	if mirror(t, db, e2) {
		t.Error("a newer record with the same content reported a change")
	}
	e2.Seq, e2.Addresses = 1, map[string]int{"web": 1}
	if mirror(t, db, e2) || db.Local().Addresses["web"] != 0 {
		t.Error("an older record was taken")
	}
	e2.Seq = 3
	if !mirror(t, db, e2) || db.Local().Addresses["web"] != 1 {
		t.Error("a newer record with new content was not taken")
	}
	if !mirror(t, db, e1) {
		t.Fatal("back to e1 reported no change")
	}
	check("back to e1", "east/e1", "east/e2", "west/w")
	s, err := Sign(w, testKey("west"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Mirror(s); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("Mirror(west's record) = %v, want ErrInvalidRecord", err)
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

// Routes avoid a draining gateway where another path exists, whatever
// the cost, and go through it where none does: east/e2 reaches west
// through e1 or e3 at the same cost, and through e1 (the lower next hop)
// until e1 drains; with e3's link to west gone, through e1 again, draining
// or not.
func TestRoutesAvoidDraining(t *testing.T) {
	e1 := routerRec("east", "e1", 1, map[string]int{"east/e2": 0, "west/w": 1}, nil)
	e3 := routerRec("east", "e3", 1, map[string]int{"east/e2": 0, "west/w": 1}, nil)
	w := routerRec("west", "w", 1, map[string]int{"east/e1": 1, "east/e3": 1}, map[string]int{"backend": 1})
	route := func(e1, e3 Record) Route {
		db := newDB("east", 10, WithRouter("e2"))
		db.SetLocal(map[string]int{"east/e1": 0, "east/e3": 0}, nil)
		for _, r := range []Record{e1, e3, w} {
			if !apply(db, r) {
				t.Fatalf("%s refused", r.Node())
			}
		}
		return db.View().Routes["west"]
	}
	if got := route(e1, e3); got.NextHop != "east/e1" {
		t.Errorf("no gateway draining: route %+v, want through east/e1", got)
	}
	e1.Draining = true
	if got := route(e1, e3); got.NextHop != "east/e3" || got.Cost != 1 {
		t.Errorf("e1 draining: route %+v, want through east/e3 at cost 1", got)
	}
	e3.Links = map[string]int{"east/e2": 0}
	if got := route(e1, e3); got.NextHop != "east/e1" {
		t.Errorf("e1 draining, e3 with no link to west: route %+v, want through east/e1", got)
	}
}
