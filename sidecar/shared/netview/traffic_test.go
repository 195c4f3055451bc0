package netview

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// report is a traffic report of west's gateway w0 with seq.
func report(seq uint64) Traffic {
	return Traffic{Site: "west", Router: "w0", Epoch: now0.UnixNano(), Seq: seq, Millis: 5000,
		Peers: map[string]PeerTraffic{"east": {Sent: 1000, Received: 20, Streams: 3}},
		Flows: map[string]map[string]FlowTraffic{"web": {"west": {Requests: 40, Errors: 1}, "north": {Connections: 2}}}}
}

func TestTrafficSignOpen(t *testing.T) {
	s, err := SignTraffic(report(1), testKey("west"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenTraffic(s.Wire(), now0)
	if err != nil {
		t.Fatalf("OpenTraffic() error = %v", err)
	}
	want := report(1)
	want.Version, want.Key = TrafficVersion, testKeyID("west")
	if diff := cmp.Diff(got.Traffic, want); diff != "" {
		t.Errorf("round trip (-got +want):\n%s", diff)
	}

	// A report edited after signing, a record's signed wire form given
	// as a report (another signing context), and garbage are refused.
	var env trafficEnvelope
	_ = json.Unmarshal(s.Wire(), &env)
	env.Traffic = []byte(strings.Replace(string(env.Traffic), `"sent":1000`, `"sent":9000`, 1))
	edited, _ := json.Marshal(env)
	if _, err := OpenTraffic(edited, now0); !errors.Is(err, ErrSignature) {
		t.Errorf("edited report: error = %v, want %v", err, ErrSignature)
	}
	rec, _ := Sign(Record{Site: "west", Router: "w0", Epoch: now0.UnixNano(), Seq: 1}, testKey("west"))
	var renv envelope
	_ = json.Unmarshal(rec.Wire(), &renv)
	asTraffic, _ := json.Marshal(trafficEnvelope{Traffic: []byte(strings.Replace(string(renv.Record), `"v":2`, `"v":1,"ms":5000`, 1)), Sig: renv.Sig})
	if _, err := OpenTraffic(asTraffic, now0); !errors.Is(err, ErrSignature) {
		t.Errorf("a record's signature as a report's: error = %v, want %v", err, ErrSignature)
	}
	for _, b := range []string{"", "{", `{"traffic":"e30=","sig":"AA=="}`, strings.Repeat(" ", MaxTrafficBytes+1)} {
		if _, err := OpenTraffic([]byte(b), now0); err == nil {
			t.Errorf("OpenTraffic(%.20q) opened", b)
		}
	}
	future := report(1)
	future.Epoch = now0.Add(2 * MaxClockSkew).UnixNano()
	fs, _ := SignTraffic(future, testKey("west"))
	if _, err := OpenTraffic(fs.Wire(), now0); !errors.Is(err, ErrInvalidTraffic) {
		t.Errorf("report from the future: error = %v, want %v", err, ErrInvalidTraffic)
	}
}

func TestTrafficValidation(t *testing.T) {
	many := map[string]map[string]FlowTraffic{}
	for i := range MaxTrafficFlows/2 + 1 {
		many["a"+strings.Repeat("b", i%50)+string(rune('a'+i/50))] = map[string]FlowTraffic{"east": {Requests: 1}, "west": {Requests: 1}}
	}
	for name, tc := range map[string]struct {
		edit func(*Traffic)
		want string
	}{
		"version":       {func(r *Traffic) { r.Version = 2 }, "understands v1"},
		"site":          {func(r *Traffic) { r.Site = "West/x" }, "traffic report"},
		"router":        {func(r *Traffic) { r.Router = "a b" }, "router"},
		"epoch":         {func(r *Traffic) { r.Epoch = 0 }, "epoch 0"},
		"seq":           {func(r *Traffic) { r.Seq = 0 }, "seq 0"},
		"no interval":   {func(r *Traffic) { r.Millis = 0 }, "interval of 0 ms"},
		"long interval": {func(r *Traffic) { r.Millis = MaxTrafficInterval.Milliseconds() + 1 }, "interval"},
		"peer":          {func(r *Traffic) { r.Peers["a/b"] = PeerTraffic{} }, `peer "a/b"`},
		"address":       {func(r *Traffic) { r.Flows["Not An Address"] = nil }, "address"},
		"flow site":     {func(r *Traffic) { r.Flows["web"]["x y"] = FlowTraffic{} }, `to "x y"`},
		"flows":         {func(r *Traffic) { r.Flows = many }, "more than 1000 flows"},
	} {
		r := report(1)
		r.Version = TrafficVersion
		tc.edit(&r)
		err := validateTraffic(r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: validateTraffic() = %v, want an error saying %q", name, err, tc.want)
		}
		if _, err := SignTraffic(r, testKey("west")); err == nil {
			t.Errorf("%s: SignTraffic() signed it", name)
		}
	}
}

func TestApplyTraffic(t *testing.T) {
	clock := now0
	db := newDB("east", 1, WithClock(func() time.Time { return clock }))
	sign := func(r Traffic, site string) SignedTraffic {
		s, err := SignTraffic(r, testKey(site))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// No record of west's w0 yet: its report is dropped, not an error.
	if ok, err := db.ApplyTraffic(sign(report(1), "west")); ok || err != nil {
		t.Fatalf("report of a node without a record: %v, %v; want dropped", ok, err)
	}
	if !apply(db, Record{Site: "west", Router: "w0", Epoch: now0.UnixNano(), Seq: 1, Links: map[string]int{"east": 1}}) {
		t.Fatal("west's record refused")
	}
	if ok, err := db.ApplyTraffic(sign(report(2), "west")); !ok || err != nil {
		t.Fatalf("west's report: %v, %v; want taken", ok, err)
	}
	// Older or the same: not taken again (not flooded again).
	if ok, err := db.ApplyTraffic(sign(report(1), "west")); ok || err != nil {
		t.Errorf("older report: %v, %v", ok, err)
	}
	// Another key claiming west: refused, the held report stays.
	forged := report(99)
	forged.Peers["east"] = PeerTraffic{Sent: 1 << 40}
	if ok, err := db.ApplyTraffic(sign(forged, "mallory")); ok || !errors.Is(err, ErrKeyConflict) {
		t.Errorf("forged report: %v, %v; want %v", ok, err, ErrKeyConflict)
	}
	// The local node's own report, flooded back: dropped.
	own := report(1)
	own.Site, own.Router = "east", ""
	if ok, err := db.ApplyTraffic(sign(own, "east")); ok || err != nil {
		t.Errorf("own report: %v, %v", ok, err)
	}
	got := db.Traffic(time.Minute)
	if len(got) != 1 || got[0].Seq != 2 || got[0].Peers["east"].Sent != 1000 || got[0].AgeMillis != 0 {
		t.Fatalf("Traffic() = %+v, want west's report 2", got)
	}
	got[0].Flows["web"]["west"] = FlowTraffic{} // the caller's copy
	if db.Traffic(time.Minute)[0].Flows["web"]["west"].Requests != 40 {
		t.Error("Traffic() returned the held report's maps")
	}
	clock = clock.Add(3 * time.Second)
	if got := db.Traffic(2 * time.Second); len(got) != 0 {
		t.Errorf("Traffic(2s) 3 s after = %+v, want none", got)
	}
	// A report goes with its node's record.
	_, _ = db.ApplyTraffic(sign(report(3), "west"))
	db.Forget("west/w0")
	if got := db.Traffic(time.Minute); len(got) != 0 {
		t.Errorf("Traffic() after the record was forgotten = %+v", got)
	}
}

func TestDBSignsTraffic(t *testing.T) {
	db := newDB("east", 42, WithRouter("e0"))
	a, err := db.SignTraffic(5*time.Second, map[string]PeerTraffic{"west": {Sent: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := db.SignTraffic(time.Microsecond, nil, nil)
	if a.Site != "east" || a.Router != "e0" || a.Epoch != 42 || a.Millis != 5000 || !b.Newer(a.Traffic) || b.Millis != 1 {
		t.Errorf("signed reports %+v then %+v", a.Traffic, b.Traffic)
	}
	if _, err := OpenTraffic(a.Wire(), now0); err != nil {
		t.Errorf("OpenTraffic(signed by the DB) error = %v", err)
	}
	if _, err := NewDB("east", 1).SignTraffic(time.Second, nil, nil); err == nil {
		t.Error("a DB without a key signed a report")
	}
}

func FuzzOpenTraffic(f *testing.F) {
	s, _ := SignTraffic(report(1), testKey("west"))
	f.Add(s.Wire())
	f.Add([]byte(`{"traffic":"e30=","sig":"AA=="}`))
	f.Add([]byte(`{"v":1,"site":"a","epoch":7,"seq":3,"ms":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := OpenTraffic(b, now0)
		if err != nil {
			return
		}
		if _, err := OpenTraffic(got.Wire(), now0); err != nil {
			t.Fatalf("OpenTraffic(OpenTraffic(b).Wire()) error = %v", err)
		}
		db := newDB("fuzz-self", 1)
		if _, err := db.ApplyTraffic(got); err != nil && !errors.Is(err, ErrKeyConflict) {
			t.Fatalf("ApplyTraffic(opened report) error = %v", err)
		}
	})
}
