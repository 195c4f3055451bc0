package netview

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// site describes one site's record content in a test network.
type site struct {
	links, addresses map[string]int
}

// network builds the DB of self from every site's record.
func network(t testing.TB, self string, sites map[string]site) *DB {
	t.Helper()
	db := newDB(self, 1)
	for name, s := range sites {
		if name == self {
			db.SetLocal(s.links, s.addresses)
			continue
		}
		if !apply(db, rec(name, 1, 1, s.links, s.addresses)) {
			t.Fatalf("Apply(%s) = false", name)
		}
	}
	return db
}

func links(kv ...any) map[string]int {
	m := map[string]int{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(int)
	}
	return m
}

func TestView(t *testing.T) {
	tests := []struct {
		name  string
		sites map[string]site
		want  *View
	}{
		{
			name:  "alone",
			sites: map[string]site{"a": {addresses: links("x", 2)}},
			want: &View{
				Self:      "a",
				Routes:    map[string]Route{},
				Addresses: map[string][]Target{"x": {{Site: "a", Endpoints: 2, Cost: 0}}},
				sites:     []string{"a"},
			},
		},
		{
			name: "chain a-b-c: c via b, costs summed",
			sites: map[string]site{
				"a": {links: links("b", 1)},
				"b": {links: links("a", 1, "c", 2)},
				"c": {links: links("b", 2), addresses: links("x", 3)},
			},
			want: &View{
				Self: "a",
				Routes: map[string]Route{
					"b": {Site: "b", NextHop: "b", Cost: 1, Hops: 1},
					"c": {Site: "c", NextHop: "b", Cost: 3, Hops: 2},
				},
				Addresses: map[string][]Target{"x": {{Site: "c", Endpoints: 3, Cost: 3}}},
				sites:     []string{"a", "b", "c"},
			},
		},
		{
			name: "diamond: the cheap side wins",
			sites: map[string]site{
				"a": {links: links("b", 1, "c", 1)},
				"b": {links: links("a", 1, "d", 5)},
				"c": {links: links("a", 1, "d", 2)},
				"d": {links: links("b", 5, "c", 2)},
			},
			want: &View{
				Self: "a",
				Routes: map[string]Route{
					"b": {Site: "b", NextHop: "b", Cost: 1, Hops: 1},
					"c": {Site: "c", NextHop: "c", Cost: 1, Hops: 1},
					"d": {Site: "d", NextHop: "c", Cost: 3, Hops: 2},
				},
				Addresses: map[string][]Target{},
				sites:     []string{"a", "b", "c", "d"},
			},
		},
		{
			name: "a multi-hop path beats a costly direct link",
			sites: map[string]site{
				"a": {links: links("b", 1, "d", 10)},
				"b": {links: links("a", 1, "c", 1)},
				"c": {links: links("b", 1, "d", 1)},
				"d": {links: links("a", 10, "c", 1)},
			},
			want: &View{
				Self: "a",
				Routes: map[string]Route{
					"b": {Site: "b", NextHop: "b", Cost: 1, Hops: 1},
					"c": {Site: "c", NextHop: "b", Cost: 2, Hops: 2},
					"d": {Site: "d", NextHop: "b", Cost: 3, Hops: 3},
				},
				Addresses: map[string][]Target{},
				sites:     []string{"a", "b", "c", "d"},
			},
		},
		{
			name: "equal-cost paths: lower next hop",
			sites: map[string]site{
				"a": {links: links("c", 1, "b", 1)},
				"b": {links: links("a", 1, "d", 1)},
				"c": {links: links("a", 1, "d", 1)},
				"d": {links: links("b", 1, "c", 1)},
			},
			want: &View{
				Self: "a",
				Routes: map[string]Route{
					"b": {Site: "b", NextHop: "b", Cost: 1, Hops: 1},
					"c": {Site: "c", NextHop: "c", Cost: 1, Hops: 1},
					"d": {Site: "d", NextHop: "b", Cost: 2, Hops: 2},
				},
				Addresses: map[string][]Target{},
				sites:     []string{"a", "b", "c", "d"},
			},
		},
		{
			name: "equal cost and next hop: fewer hops",
			sites: map[string]site{
				"a": {links: links("b", 1)},
				"b": {links: links("a", 1, "d", 2, "e", 1)},
				"d": {links: links("b", 2, "e", 1)},
				"e": {links: links("b", 1, "d", 1)},
			},
			want: &View{
				Self: "a",
				Routes: map[string]Route{
					"b": {Site: "b", NextHop: "b", Cost: 1, Hops: 1},
					"d": {Site: "d", NextHop: "b", Cost: 3, Hops: 2},
					"e": {Site: "e", NextHop: "b", Cost: 2, Hops: 2},
				},
				Addresses: map[string][]Target{},
				sites:     []string{"a", "b", "d", "e"},
			},
		},
		{
			name: "asymmetric claims: the higher cost counts",
			sites: map[string]site{
				"a": {links: links("b", 1)},
				"b": {links: links("a", 7)},
			},
			want: &View{
				Self:      "a",
				Routes:    map[string]Route{"b": {Site: "b", NextHop: "b", Cost: 7, Hops: 1}},
				Addresses: map[string][]Target{},
				sites:     []string{"a", "b"},
			},
		},
		{
			name: "one-sided links are ignored",
			sites: map[string]site{
				"a":      {links: links("b", 1, "dead", 1)},
				"b":      {links: links("a", 1)},                                 // b does not list c
				"c":      {links: links("b", 1), addresses: links("x", 1)},       // c's stale claim
				"dead":   {links: links("b", 1), addresses: links("x", 1)},       // a lists dead, dead does not list a
				"ghost":  {links: links("a", 1, "b", 1)},                         // nobody lists ghost
				"nobody": {links: links("nowhere", 1), addresses: links("y", 1)}, // a link to a site with no record
			},
			want: &View{
				Self:        "a",
				Routes:      map[string]Route{"b": {Site: "b", NextHop: "b", Cost: 1, Hops: 1}},
				Addresses:   map[string][]Target{},
				Unreachable: []string{"c", "dead", "ghost", "nobody"},
				sites:       []string{"a", "b"},
			},
		},
		{
			name: "addresses: self first at cost 0, then by cost, then site",
			sites: map[string]site{
				"m": {links: links("z", 1, "b", 2, "c", 1), addresses: links("x", 1)},
				"z": {links: links("m", 1), addresses: links("x", 4, "y", 1)},
				"b": {links: links("m", 2), addresses: links("x", 2, "idle", 0)},
				"c": {links: links("m", 1), addresses: links("x", 1)},
			},
			want: &View{
				Self: "m",
				Routes: map[string]Route{
					"b": {Site: "b", NextHop: "b", Cost: 2, Hops: 1},
					"c": {Site: "c", NextHop: "c", Cost: 1, Hops: 1},
					"z": {Site: "z", NextHop: "z", Cost: 1, Hops: 1},
				},
				Addresses: map[string][]Target{
					"x": {
						{Site: "m", Endpoints: 1, Cost: 0},
						{Site: "c", Endpoints: 1, Cost: 1},
						{Site: "z", Endpoints: 4, Cost: 1},
						{Site: "b", Endpoints: 2, Cost: 2},
					},
					"y": {{Site: "z", Endpoints: 1, Cost: 1}},
				},
				sites: []string{"b", "c", "m", "z"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := network(t, tt.want.Self, tt.sites)
			got := db.View()
			if diff := cmp.Diff(got, tt.want, cmp.AllowUnexported(View{}), cmpopts.IgnoreFields(View{}, "Node", "Routers", "UnreachableNodes", "hops")); diff != "" {
				t.Errorf("View() (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(got.Sites(), tt.want.sites); diff != "" {
				t.Errorf("Sites() (-got +want):\n%s", diff)
			}
			for s, r := range tt.want.Routes {
				if nh, ok := got.NextHop(s); !ok || nh != r.NextHop {
					t.Errorf("NextHop(%q) = %q, %v, want %q, true", s, nh, ok, r.NextHop)
				}
			}
			for _, s := range append([]string{tt.want.Self, "unknown"}, tt.want.Unreachable...) {
				if nh, ok := got.NextHop(s); ok {
					t.Errorf("NextHop(%q) = %q, true, want false", s, nh)
				}
			}
		})
	}
}

// TestViewChanges follows one network through a sequence of record changes.
func TestViewChanges(t *testing.T) {
	db := network(t, "a", map[string]site{
		"a": {links: links("b", 1, "c", 1)},
		"b": {links: links("a", 1, "d", 1)},
		"c": {links: links("a", 1, "d", 3)},
		"d": {links: links("b", 1, "c", 3), addresses: links("x", 2)},
		"e": {links: links("d", 1), addresses: links("x", 1, "y", 1)},
	})
	// e lists d, but d does not list e yet.
	type want struct {
		routes      map[string]Route
		addresses   map[string][]Target
		unreachable []string
	}
	steps := []struct {
		name   string
		change func()
		want   want
	}{
		{
			name:   "start: d via b",
			change: func() {},
			want: want{
				routes: map[string]Route{
					"b": {"b", "b", 1, 1, ""}, "c": {"c", "c", 1, 1, ""}, "d": {"d", "b", 2, 2, ""},
				},
				addresses:   map[string][]Target{"x": {{"d", 2, 2}}},
				unreachable: []string{"e"},
			},
		},
		{
			name:   "d's link to e comes up: e joins",
			change: func() { apply(db, rec("d", 1, 2, links("b", 1, "c", 3, "e", 1), links("x", 2))) },
			want: want{
				routes: map[string]Route{
					"b": {"b", "b", 1, 1, ""}, "c": {"c", "c", 1, 1, ""}, "d": {"d", "b", 2, 2, ""}, "e": {"e", "b", 3, 3, ""},
				},
				addresses: map[string][]Target{"x": {{"d", 2, 2}, {"e", 1, 3}}, "y": {{"e", 1, 3}}},
			},
		},
		{
			name: "b's link to d goes down: d and e move to c",
			// d has not noticed yet: its record still lists b.
			change: func() { apply(db, rec("b", 1, 2, links("a", 1), nil)) },
			want: want{
				routes: map[string]Route{
					"b": {"b", "b", 1, 1, ""}, "c": {"c", "c", 1, 1, ""}, "d": {"d", "c", 4, 2, ""}, "e": {"e", "c", 5, 3, ""},
				},
				addresses: map[string][]Target{"x": {{"d", 2, 4}, {"e", 1, 5}}, "y": {{"e", 1, 5}}},
			},
		},
		{
			name: "partition: c's link to d goes down, d and e drop out with their addresses",
			change: func() {
				apply(db, rec("c", 1, 2, links("a", 1), nil))
			},
			want: want{
				routes:      map[string]Route{"b": {"b", "b", 1, 1, ""}, "c": {"c", "c", 1, 1, ""}},
				addresses:   map[string][]Target{},
				unreachable: []string{"d", "e"},
			},
		},
		{
			name:   "a one-sided local link to e heals nothing",
			change: func() { db.SetLocal(links("b", 1, "c", 1, "e", 1), links("x", 1)) },
			want: want{
				routes:      map[string]Route{"b": {"b", "b", 1, 1, ""}, "c": {"c", "c", 1, 1, ""}},
				addresses:   map[string][]Target{"x": {{"a", 1, 0}}},
				unreachable: []string{"d", "e"},
			},
		},
		{
			name:   "e restarts, lists a and d: e direct, d through e",
			change: func() { apply(db, rec("e", 2, 1, links("a", 1, "d", 1), links("y", 1))) },
			want: want{
				routes: map[string]Route{
					"b": {"b", "b", 1, 1, ""}, "c": {"c", "c", 1, 1, ""}, "d": {"d", "e", 2, 2, ""}, "e": {"e", "e", 1, 1, ""},
				},
				addresses: map[string][]Target{"x": {{"a", 1, 0}, {"d", 2, 2}}, "y": {{"e", 1, 1}}},
			},
		},
	}
	for _, s := range steps {
		s.change()
		v := db.View()
		got := want{v.Routes, v.Addresses, v.Unreachable}
		if diff := cmp.Diff(got, s.want, cmp.AllowUnexported(want{})); diff != "" {
			t.Errorf("%s (-got +want):\n%s", s.name, diff)
		}
	}
}

// TestViewMatchesReference checks routes on random graphs against an
// all-pairs computation of the same tie-breaking rule.
func TestViewMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			size := 2 + rng.IntN(12)
			sites := randomNetwork(rng, size, 1+rng.IntN(3), 1+rng.IntN(4))
			self := fmt.Sprintf("s%03d", rng.IntN(size))
			got := network(t, self, sites).View()
			want := reference(self, sites)
			if diff := cmp.Diff(got.Routes, want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Routes (-got +want):\n%s", diff)
			}
		})
	}
}

// randomNetwork returns size sites ("s000"...), each dialling about degree
// random others at costs 1..maxCost; one link in ten is one-sided.
func randomNetwork(rng *rand.Rand, size, degree, maxCost int) map[string]site {
	name := func(i int) string { return fmt.Sprintf("s%03d", i) }
	sites := make(map[string]site, size)
	for i := range size {
		sites[name(i)] = site{links: map[string]int{}, addresses: map[string]int{fmt.Sprintf("addr%d", i%10): 1 + i%3}}
	}
	for i := range size {
		for range degree {
			j := rng.IntN(size)
			if j == i {
				continue
			}
			c := 1 + rng.IntN(maxCost)
			sites[name(i)].links[name(j)] = c
			if rng.IntN(10) > 0 {
				sites[name(j)].links[name(i)] = c + rng.IntN(2)
			}
		}
	}
	return sites
}

// reference computes routes with Floyd-Warshall over (cost, hops): a route's
// next hop is the lowest-named neighbour on a path with the least cost and,
// among those, the fewest hops.
func reference(self string, sites map[string]site) map[string]Route {
	var names []string
	for s := range sites {
		names = append(names, s)
	}
	slices.Sort(names)
	n := len(names)
	const inf = 1 << 40
	type d struct{ cost, hops int }
	dist := make([][]d, n)
	w := make([][]int, n)
	for i := range names {
		dist[i] = make([]d, n)
		w[i] = make([]int, n)
		for j := range names {
			dist[i][j] = d{inf, 0}
			w[i][j] = inf
			c1, ok1 := sites[names[i]].links[names[j]]
			c2, ok2 := sites[names[j]].links[names[i]]
			if ok1 && ok2 {
				w[i][j] = max(c1, c2)
				dist[i][j] = d{w[i][j], 1}
			}
		}
		dist[i][i] = d{0, 0}
	}
	for k := range n {
		for i := range n {
			for j := range n {
				c := d{dist[i][k].cost + dist[k][j].cost, dist[i][k].hops + dist[k][j].hops}
				if c.cost < dist[i][j].cost || c.cost == dist[i][j].cost && c.hops < dist[i][j].hops {
					dist[i][j] = c
				}
			}
		}
	}
	s := slices.Index(names, self)
	routes := map[string]Route{}
	for t := range n {
		if t == s || dist[s][t].cost >= inf {
			continue
		}
		for nh := range n { // in name order: the first that fits wins
			if w[s][nh] < inf && w[s][nh]+dist[nh][t].cost == dist[s][t].cost && 1+dist[nh][t].hops == dist[s][t].hops {
				routes[names[t]] = Route{Site: names[t], NextHop: names[nh], Cost: dist[s][t].cost, Hops: dist[s][t].hops}
				break
			}
		}
	}
	return routes
}

func BenchmarkView(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(7, 7))
			sites := randomNetwork(rng, size, 2, 10)
			db := network(b, "s000", sites)
			b.ReportAllocs()
			var v *View
			for b.Loop() {
				db.view.Store(nil)
				v = db.View()
			}
			b.ReportMetric(float64(len(v.Sites())), "reachable")
		})
	}
}
