package netview

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// rec returns a valid record.
func rec(site string, epoch int64, seq uint64, links, addresses map[string]int) Record {
	return Record{Version: RecordVersion, Site: site, Key: testKeyID(site), Epoch: epoch, Seq: seq, Links: links, Addresses: addresses}
}

func TestSetLocal(t *testing.T) {
	type step struct {
		links, addresses map[string]int
		wantChanged      bool
		want             Record
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "seq bumps only on change",
			steps: []step{
				{nil, nil, false, rec("a", 10, 1, nil, nil)},
				{map[string]int{}, map[string]int{}, false, rec("a", 10, 1, nil, nil)},
				{map[string]int{"b": 1}, nil, true, rec("a", 10, 2, map[string]int{"b": 1}, nil)},
				{map[string]int{"b": 1}, nil, false, rec("a", 10, 2, map[string]int{"b": 1}, nil)},
				{map[string]int{"b": 2}, nil, true, rec("a", 10, 3, map[string]int{"b": 2}, nil)},
				{map[string]int{"b": 2}, map[string]int{"x": 1}, true, rec("a", 10, 4, map[string]int{"b": 2}, map[string]int{"x": 1})},
				{nil, nil, true, rec("a", 10, 5, nil, nil)},
			},
		},
		{
			name: "content is normalised to what peers accept",
			steps: []step{
				{
					map[string]int{"b": 0, "c": -3, "d": MaxCost + 1, "a": 1, "": 1},
					map[string]int{"x": 2, "idle": 0, "bad": -1, "": 4},
					true,
					rec("a", 10, 2, map[string]int{"b": 1, "c": 1, "d": MaxCost}, map[string]int{"x": 2}),
				},
				// An address going to zero endpoints is a change; one
				// appearing with zero is not.
				{map[string]int{"b": 1, "c": 1, "d": MaxCost}, map[string]int{"x": 2, "new": 0}, false, rec("a", 10, 2, map[string]int{"b": 1, "c": 1, "d": MaxCost}, map[string]int{"x": 2})},
				{map[string]int{"b": 1, "c": 1, "d": MaxCost}, map[string]int{"x": 0}, true, rec("a", 10, 3, map[string]int{"b": 1, "c": 1, "d": MaxCost}, nil)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newDB("a", 10)
			for i, s := range tt.steps {
				got, changed := db.SetLocal(s.links, s.addresses)
				if changed != s.wantChanged {
					t.Errorf("step %d: changed = %v, want %v", i, changed, s.wantChanged)
				}
				if diff := cmp.Diff(got, s.want); diff != "" {
					t.Errorf("step %d: SetLocal() (-got +want):\n%s", i, diff)
				}
				if diff := cmp.Diff(db.Local(), s.want); diff != "" {
					t.Errorf("step %d: Local() (-got +want):\n%s", i, diff)
				}
				if _, err := Encode(got); err != nil {
					t.Errorf("step %d: local record does not encode: %v", i, err)
				}
			}
		})
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		applied []Record // applied in order before r
		r       Record
		want    bool
		stored  Record // what the DB holds for r.Site afterwards
	}{
		{
			name:   "first record of a site",
			r:      rec("b", 5, 1, nil, nil),
			want:   true,
			stored: rec("b", 5, 1, nil, nil),
		},
		{
			name:    "newer seq",
			applied: []Record{rec("b", 5, 1, nil, nil)},
			r:       rec("b", 5, 2, map[string]int{"a": 1}, nil),
			want:    true,
			stored:  rec("b", 5, 2, map[string]int{"a": 1}, nil),
		},
		{
			name:    "same seq is not flooded again",
			applied: []Record{rec("b", 5, 2, map[string]int{"a": 1}, nil)},
			r:       rec("b", 5, 2, map[string]int{"a": 1}, nil),
			want:    false,
			stored:  rec("b", 5, 2, map[string]int{"a": 1}, nil),
		},
		{
			name:    "older seq",
			applied: []Record{rec("b", 5, 9, map[string]int{"a": 1}, nil)},
			r:       rec("b", 5, 8, nil, nil),
			want:    false,
			stored:  rec("b", 5, 9, map[string]int{"a": 1}, nil),
		},
		{
			name:    "restarted site supersedes a higher seq",
			applied: []Record{rec("b", 5, 900, map[string]int{"a": 1, "c": 1}, nil)},
			r:       rec("b", 6, 1, nil, nil),
			want:    true,
			stored:  rec("b", 6, 1, nil, nil),
		},
		{
			name:    "old incarnation's record is ignored after restart",
			applied: []Record{rec("b", 6, 1, nil, nil)},
			r:       rec("b", 5, 900, map[string]int{"a": 1, "c": 1}, nil),
			want:    false,
			stored:  rec("b", 6, 1, nil, nil),
		},
		{
			name:   "record claiming to be us is ignored",
			r:      rec("a", 1<<62, 1<<63, map[string]int{"evil": 1}, map[string]int{"x": 100}),
			want:   false,
			stored: rec("a", 10, 2, map[string]int{"b": 1}, map[string]int{"x": 1}),
		},
		{
			name:   "invalid record is ignored",
			r:      rec("b", 5, 1, map[string]int{"a": 0}, nil),
			want:   false,
			stored: Record{},
		},
		{
			name:   "unknown version is ignored",
			r:      Record{Version: 3, Site: "b", Epoch: 5, Seq: 1},
			want:   false,
			stored: Record{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newDB("a", 10)
			db.SetLocal(map[string]int{"b": 1}, map[string]int{"x": 1})
			for _, r := range tt.applied {
				if !apply(db, r) {
					t.Fatalf("setup: Apply(%+v) = false", r)
				}
			}
			if got := apply(db, tt.r); got != tt.want {
				t.Errorf("Apply() = %v, want %v", got, tt.want)
			}
			var stored Record
			for _, r := range db.Records() {
				if r.Site == tt.r.Site {
					stored = r
				}
			}
			if diff := cmp.Diff(stored, tt.stored); diff != "" {
				t.Errorf("stored record (-got +want):\n%s", diff)
			}
		})
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	a := newDB("a", 10)
	a.SetLocal(map[string]int{"b": 1, "c": 4}, map[string]int{"x": 2})
	for _, r := range []Record{
		rec("c", 30, 7, map[string]int{"a": 4, "d": 1}, nil),
		rec("b", 20, 3, map[string]int{"a": 1}, map[string]int{"x": 1, "y": 5}),
		rec("d", 40, 1, map[string]int{"c": 1}, nil),
	} {
		if !apply(a, r) {
			t.Fatalf("Apply(%+v) = false", r)
		}
	}
	want := []Record{
		rec("a", 10, 2, map[string]int{"b": 1, "c": 4}, map[string]int{"x": 2}),
		rec("b", 20, 3, map[string]int{"a": 1}, map[string]int{"x": 1, "y": 5}),
		rec("c", 30, 7, map[string]int{"a": 4, "d": 1}, nil),
		rec("d", 40, 1, map[string]int{"c": 1}, nil),
	}
	if diff := cmp.Diff(a.Records(), want); diff != "" {
		t.Fatalf("Records() (-got +want):\n%s", diff)
	}

	// A new peer "e", linked to "a", gets a full sync over the wire.
	e := newDB("e", 50)
	e.SetLocal(map[string]int{"a": 2}, nil)
	for _, r := range a.Records() {
		b, err := Encode(r)
		if err != nil {
			t.Fatalf("Encode() error = %v", err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode() error = %v", err)
		}
		if !apply(e, got) {
			t.Errorf("Apply(%s) = false on a fresh DB", r.Site)
		}
	}
	wantE := append(append([]Record{}, want...), rec("e", 50, 2, map[string]int{"a": 2}, nil))
	if diff := cmp.Diff(e.Records(), wantE); diff != "" {
		t.Errorf("peer's Records() (-got +want):\n%s", diff)
	}
	// Applying the same records again changes nothing.
	for _, r := range a.Records() {
		if apply(e, r) {
			t.Errorf("second Apply(%s) = true", r.Site)
		}
	}
}

func TestReturnedRecordsAreCopies(t *testing.T) {
	db := newDB("a", 1)
	links := map[string]int{"b": 1}
	db.SetLocal(links, nil)
	links["c"] = 1 // caller's map is not the DB's
	db.Local().Links["d"] = 1
	in := rec("b", 1, 1, map[string]int{"a": 1}, nil)
	apply(db, in)
	in.Links["x"] = 1
	db.Records()[1].Links["y"] = 1

	want := []Record{
		rec("a", 1, 2, map[string]int{"b": 1}, nil),
		rec("b", 1, 1, map[string]int{"a": 1}, nil),
	}
	if diff := cmp.Diff(db.Records(), want); diff != "" {
		t.Errorf("Records() (-got +want):\n%s", diff)
	}
}

func TestForget(t *testing.T) {
	db := newDB("a", 1)
	db.SetLocal(map[string]int{"b": 1}, nil)
	apply(db, rec("b", 1, 1, nil, nil))
	apply(db, rec("c", 1, 1, nil, nil))
	if diff := cmp.Diff(db.View().Unreachable, []string{"b", "c"}); diff != "" {
		t.Fatalf("Unreachable (-got +want):\n%s", diff)
	}
	db.Forget("c")
	db.Forget("a") // the local record cannot be forgotten
	db.Forget("nope")
	if diff := cmp.Diff(db.View().Unreachable, []string{"b"}); diff != "" {
		t.Errorf("Unreachable after Forget (-got +want):\n%s", diff)
	}
	if got := len(db.Records()); got != 2 {
		t.Errorf("len(Records()) = %d, want 2", got)
	}
	// A forgotten site comes back with its next record, whatever its seq.
	if !apply(db, rec("c", 1, 1, nil, nil)) {
		t.Errorf("Apply() after Forget = false")
	}
}

func TestViewCached(t *testing.T) {
	db := newDB("a", 1)
	db.SetLocal(map[string]int{"b": 1}, nil)
	apply(db, rec("b", 1, 1, map[string]int{"a": 1}, nil))
	v1 := db.View()
	if db.View() != v1 {
		t.Fatal("View() recomputed without a change")
	}
	if _, changed := db.SetLocal(map[string]int{"b": 1}, nil); changed || db.View() != v1 {
		t.Fatal("an unchanged SetLocal dropped the view")
	}
	// A newer record with the same content changes nothing to route on.
	if !apply(db, rec("b", 2, 1, map[string]int{"a": 1}, nil)) || db.View() != v1 {
		t.Fatal("a newer record with the same content dropped the view")
	}
	apply(db, rec("b", 2, 2, map[string]int{"a": 1}, map[string]int{"x": 1}))
	v2 := db.View()
	if v2 == v1 {
		t.Fatal("View() not recomputed after a change")
	}
	if diff := cmp.Diff(v2.Addresses, map[string][]Target{"x": {{Site: "b", Endpoints: 1, Cost: 1}}}); diff != "" {
		t.Errorf("Addresses (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(v1.Addresses, map[string][]Target{}); diff != "" {
		t.Errorf("old view changed (-got +want):\n%s", diff)
	}
}

// TestConcurrent is for the race detector.
func TestConcurrent(t *testing.T) {
	db := newDB("s0", 1)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			site := fmt.Sprintf("s%d", g+1)
			for i := range 200 {
				switch g % 4 {
				case 0:
					db.SetLocal(map[string]int{"s1": 1 + i%3, "s2": 1}, map[string]int{"x": i % 4})
				case 1, 2:
					apply(db, rec(site, 1, uint64(i+1), map[string]int{"s0": 1, "s1": 1 + i%2}, map[string]int{"x": 1}))
				default:
					v := db.View()
					for _, s := range v.Sites() {
						v.NextHop(s)
					}
					_ = db.Records()
					if i%50 == 0 {
						db.Forget(site)
					}
				}
			}
		})
	}
	wg.Wait()
}

// The routing a site declares reaches other sites' views; the cheapest
// declaring site wins, and a change bumps the record.
func TestRoutingInView(t *testing.T) {
	a, b, c := newDB("a", 1), newDB("b", 1), newDB("c", 1)
	a.SetLocal(map[string]int{"b": 1, "c": 5}, nil)
	b.SetLocal(map[string]int{"a": 1}, map[string]int{"x": 1, "y": 1})
	c.SetLocal(map[string]int{"a": 5}, map[string]int{"x": 2})
	if _, changed := b.SetLocalRouting(map[string]string{"x": "closest", "": "closest", "y": ""}); !changed {
		t.Fatal("SetLocalRouting reported no change")
	}
	if _, changed := b.SetLocalRouting(map[string]string{"x": "closest"}); changed {
		t.Error("same routing reported as a change")
	}
	c.SetLocalRouting(map[string]string{"x": "multicast"})
	// A later SetLocal keeps the declared routing.
	rec, _ := b.SetLocal(map[string]int{"a": 1}, map[string]int{"x": 3, "y": 1})
	if diff := cmp.Diff(rec.Routing, map[string]string{"x": "closest"}); diff != "" {
		t.Errorf("b's routing after SetLocal (-got +want):\n%s", diff)
	}
	for _, r := range []Record{b.Local(), c.Local()} {
		enc, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := Decode(enc)
		if err != nil {
			t.Fatal(err)
		}
		apply(a, dec)
	}
	if diff := cmp.Diff(a.View().Routing, map[string]string{"x": "closest"}); diff != "" {
		t.Errorf("a's view routing (-got +want):\n%s", diff)
	}
	if _, err := Decode([]byte(`{"v":1,"site":"z","epoch":1,"seq":1,"routing":{"x":""}}`)); err == nil {
		t.Error("a record with an empty pattern was accepted")
	}
}
