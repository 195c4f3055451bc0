package netview

import (
	"slices"
	"testing"
)

// A rolling upgrade as the end-to-end scenario saw it: the old gateways
// a and b drain; the new ones c and d have not found each other yet, so
// c is linked to b alone, and west links to a (its replacement link not
// up yet) and d. Without b, c reaches neither d nor west, and d does not
// reach c: b strands all three.
// Once c and d link, b strands nothing; a strands west until west links
// to a gateway that does not drain. A gateway with no other gateway of
// its site strands nothing: there is no one to wait for.
func TestStranded(t *testing.T) {
	drain := func(r Record) Record { r.Draining = true; return r }
	a := drain(routerRec("east", "a", 1, map[string]int{"east/b": 0, "east/d": 0, "west/w": 1}, nil))
	b := drain(routerRec("east", "b", 1, map[string]int{"east/a": 0, "east/c": 0, "east/d": 0}, nil))
	c := routerRec("east", "c", 1, map[string]int{"east/b": 0}, nil)
	d := routerRec("east", "d", 1, map[string]int{"east/a": 0, "east/b": 0, "west/w": 1}, nil)
	w := routerRec("west", "w", 1, map[string]int{"east/a": 1, "east/d": 1}, map[string]int{"backend": 1})
	stranded := func(self Record, others ...Record) []string {
		t.Helper()
		db := newDB("east", 10, WithRouter(self.Router))
		db.SetLocal(self.Links, nil)
		db.SetLocalDraining(self.Draining)
		for _, r := range others {
			if !apply(db, r) {
				t.Fatalf("%s refused", r.Node())
			}
		}
		return db.Stranded(self.Node())
	}
	if got := stranded(b, a, c, d, w); !slices.Equal(got, []string{"east/c", "east/d", "west"}) {
		t.Errorf("b strands %v, want [east/c east/d west]", got)
	}
	c.Links = map[string]int{"east/b": 0, "east/d": 0}
	d.Links["east/c"] = 0
	if got := stranded(b, a, c, d, w); got != nil {
		t.Errorf("with c and d linked, b strands %v, want nothing", got)
	}
	w.Links = map[string]int{"east/a": 1}
	delete(d.Links, "west/w")
	if got := stranded(a, b, c, d, w); !slices.Equal(got, []string{"west"}) {
		t.Errorf("a strands %v, want [west]", got)
	}
	lone := drain(routerRec("east", "a", 1, map[string]int{"west/w": 1}, nil))
	if got := stranded(lone, routerRec("west", "w", 1, map[string]int{"east/a": 1}, nil)); got != nil {
		t.Errorf("a lone gateway strands %v, want nothing", got)
	}
}
