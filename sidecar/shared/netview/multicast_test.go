package netview

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// withMulticast returns r declaring multicast modes.
func withMulticast(r Record, multicast map[string]string) Record {
	r.Multicast = multicast
	return r
}

// A record declares the multicast modes of its addresses as names, for
// addresses a record may name; a mode this version cannot parse is
// accepted (and read as the default), so that a newer site's records are
// not refused.
func TestRecordMulticast(t *testing.T) {
	many := map[string]string{}
	for i := range MaxAddresses + 1 {
		many[fmt.Sprintf("a%d", i)] = "aggregate-5000ms"
	}
	base := rec("west", 1, 1, nil, map[string]int{"web": 1})
	tests := []struct {
		name      string
		multicast map[string]string
		wantMsg   string // a part of the error; "" for a valid record
	}{
		{name: "none", multicast: nil},
		{name: "the defaults", multicast: map[string]string{"web": "aggregate-5000ms"}},
		{name: "every mode", multicast: map[string]string{"web": "aggregate-1ms", "api:8080": "events-300000ms"}},
		{name: "an address without endpoints", multicast: map[string]string{"gone": "events-2000ms"}},
		{name: "a mode a newer site knows", multicast: map[string]string{"web": "quorum-3000ms"}},
		{name: "a deadline this version refuses", multicast: map[string]string{"web": "aggregate-900000ms"}},
		{name: "not the text form", multicast: map[string]string{"web": "events"}},
		{name: "empty", multicast: map[string]string{"web": ""}, wantMsg: `bad multicast "" for address "web"`},
		{name: "not a label: case", multicast: map[string]string{"web": "Aggregate-5000ms"}, wantMsg: `bad multicast "Aggregate-5000ms" for address "web"`},
		{name: "not a label: a duration", multicast: map[string]string{"web": "events-1.5s"}, wantMsg: `bad multicast "events-1.5s" for address "web"`},
		{name: "longer than 32", multicast: map[string]string{"web": "aggregate-" + strings.Repeat("1", 21) + "ms"}, wantMsg: `bad multicast "aggregate-`},
		{name: "long value is clipped", multicast: map[string]string{"web": strings.Repeat("m", 100)}, wantMsg: `bad multicast "` + strings.Repeat("m", 64) + `…"`},
		{name: "empty address", multicast: map[string]string{"": "aggregate-5000ms"}, wantMsg: "multicast: "},
		{name: "address with a space", multicast: map[string]string{"x y": "aggregate-5000ms"}, wantMsg: "multicast: "},
		{name: "too many", multicast: many, wantMsg: fmt.Sprintf("%d multicast entries, at most %d", MaxAddresses+1, MaxAddresses)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := withMulticast(base, tt.multicast)
			checkValidation(t, r, tt.wantMsg)
		})
	}
}

// The record's signature covers its multicast modes: a transit gateway
// (or anyone on the way) cannot add, change or drop one.
func TestSignatureCoversMulticast(t *testing.T) {
	signed := func(r Record) []byte { return signedWire(t, r) }
	edit := func(wire []byte, old, new string) []byte { return editSigned(t, wire, old, new) }
	plain := rec("west", now0.UnixNano(), 3, map[string]int{"east": 2}, map[string]int{"web": 1, "api": 1})
	declared := withMulticast(plain, map[string]string{"web": "aggregate-5000ms"})
	tests := []struct {
		name string
		wire []byte
	}{
		{"mode changed", edit(signed(declared), `"multicast":{"web":"aggregate-5000ms"}`, `"multicast":{"web":"events-5000ms"}`)},
		{"deadline changed", edit(signed(declared), `"multicast":{"web":"aggregate-5000ms"}`, `"multicast":{"web":"aggregate-1ms"}`)},
		{"mode added", edit(signed(declared), `"multicast":{"web":"aggregate-5000ms"}`, `"multicast":{"api":"events-5000ms","web":"aggregate-5000ms"}`)},
		{"multicast dropped", edit(signed(declared), `,"multicast":{"web":"aggregate-5000ms"}`, ``)},
		{"multicast added to a record without", edit(signed(plain), `"seq":3,`, `"seq":3,"multicast":{"web":"events-5000ms"},`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(tt.wire, now0); !errors.Is(err, ErrSignature) {
				t.Errorf("Open() error = %v, want %v", err, ErrSignature)
			}
		})
	}
	got, err := Open(signed(declared), now0)
	if err != nil {
		t.Fatalf("Open() of the untouched record: %v", err)
	}
	if diff := cmp.Diff(got.Multicast, declared.Multicast); diff != "" {
		t.Errorf("opened multicast (-got +want):\n%s", diff)
	}
}

// SetLocalMulticast keeps what peers accept, in canonical form, the
// defaults included, bumps Seq only on a change, and later changes of the
// record's other content keep the modes.
func TestSetLocalMulticast(t *testing.T) {
	tests := []struct {
		name        string
		multicast   map[string]string
		wantChanged bool
		want        map[string]string
	}{
		{"none is no change", nil, false, nil},
		{"unparseable and unnamed are dropped", map[string]string{"x": "", "y": "quorum-5000ms", "z": "events", "w": "events-0ms", "": "aggregate-5000ms"}, false, nil},
		{"the defaults are kept", map[string]string{"web": "aggregate-5000ms"}, true, map[string]string{"web": "aggregate-5000ms"}},
		{"canonical form", map[string]string{"web": "aggregate-5000ms", "hook": "events-0250ms"}, true, map[string]string{"web": "aggregate-5000ms", "hook": "events-250ms"}},
		{"the same again", map[string]string{"web": "aggregate-05000ms", "hook": "events-250ms"}, false, map[string]string{"web": "aggregate-5000ms", "hook": "events-250ms"}},
		{"a deadline changes", map[string]string{"web": "aggregate-300000ms", "hook": "events-250ms"}, true, map[string]string{"web": "aggregate-300000ms", "hook": "events-250ms"}},
		{"all gone", map[string]string{}, true, nil},
	}
	db := newDB("a", 10)
	seq := db.Local().Seq
	for _, tt := range tests {
		got, changed := db.SetLocalMulticast(tt.multicast)
		if changed != tt.wantChanged {
			t.Errorf("%s: changed = %v, want %v", tt.name, changed, tt.wantChanged)
		}
		if tt.wantChanged {
			seq++
		}
		if got.Seq != seq {
			t.Errorf("%s: seq %d, want %d", tt.name, got.Seq, seq)
		}
		if diff := cmp.Diff(got.Multicast, tt.want); diff != "" {
			t.Errorf("%s: multicast (-got +want):\n%s", tt.name, diff)
		}
		if _, err := Sign(got, testKey("a")); err != nil {
			t.Errorf("%s: the local record cannot be signed: %v", tt.name, err)
		}
	}
	db.SetLocalMulticast(map[string]string{"web": "events-2000ms"})
	r, _ := db.SetLocal(map[string]int{"b": 1}, map[string]int{"web": 2})
	if diff := cmp.Diff(r.Multicast, map[string]string{"web": "events-2000ms"}); diff != "" {
		t.Errorf("multicast after SetLocal (-got +want):\n%s", diff)
	}
	if _, changed := db.SetLocal(map[string]int{"b": 1}, map[string]int{"web": 2}); changed {
		t.Error("SetLocal of the same links and addresses reported a change")
	}
	// The routing and protocols setters leave the modes alone.
	db.SetLocalRouting(map[string]string{"web": "multicast"})
	r, _ = db.SetLocalProtocols(map[string]string{"web": "http"})
	if diff := cmp.Diff(r.Multicast, map[string]string{"web": "events-2000ms"}); diff != "" {
		t.Errorf("multicast after SetLocalRouting and SetLocalProtocols (-got +want):\n%s", diff)
	}
}

// A sidecar's local record takes the multicast modes of its gateway's
// record.
func TestMirrorTakesMulticast(t *testing.T) {
	db := newDB("east", 10)
	e1 := withMulticast(routerRec("east", "e1", 1, nil, map[string]int{"web": 1}), map[string]string{"web": "events-250ms"})
	if !mirror(t, db, e1) {
		t.Fatal("the gateway's record changed nothing")
	}
	if diff := cmp.Diff(db.Local().Multicast, map[string]string{"web": "events-250ms"}); diff != "" {
		t.Errorf("local multicast after Mirror (-got +want):\n%s", diff)
	}
}

// The view declares per address the multicast mode of the first of its
// sorted targets (by cost, then site) that declares one; the document
// carries it. Here a links to b at 1, to c at 5 and to d at 5.
func TestViewMulticast(t *testing.T) {
	tests := []struct {
		name     string
		local    map[string]string            // a's own declarations
		declared map[string]map[string]string // by site
		want     map[string]string
	}{
		{name: "none declared", want: nil},
		{
			name:     "the cheapest site that declares one",
			declared: map[string]map[string]string{"b": {"web": "aggregate-5000ms"}, "c": {"web": "events-1000ms"}},
			want:     map[string]string{"web": "aggregate-5000ms"},
		},
		{
			name:     "a nearer site that declares none is passed over",
			declared: map[string]map[string]string{"c": {"web": "events-1000ms"}},
			want:     map[string]string{"web": "events-1000ms"},
		},
		{
			name:     "among equal costs, by site name",
			declared: map[string]map[string]string{"d": {"web": "aggregate-100ms"}, "c": {"web": "events-100ms"}},
			want:     map[string]string{"web": "events-100ms"},
		},
		{
			name:     "the local site is the cheapest",
			local:    map[string]string{"web": "events-2000ms"},
			declared: map[string]map[string]string{"b": {"web": "aggregate-5000ms"}},
			want:     map[string]string{"web": "events-2000ms"},
		},
		{
			name:     "a mode this version cannot parse is passed on as declared",
			declared: map[string]map[string]string{"b": {"web": "quorum-5000ms"}, "c": {"web": "events-1000ms"}},
			want:     map[string]string{"web": "quorum-5000ms"},
		},
		{
			name:     "per address",
			declared: map[string]map[string]string{"b": {"web": "aggregate-5000ms"}, "c": {"rpc": "events-10ms"}},
			want:     map[string]string{"web": "aggregate-5000ms", "rpc": "events-10ms"},
		},
		{
			name:     "an address no reachable site serves is left out",
			declared: map[string]map[string]string{"b": {"web": "aggregate-5000ms", "gone": "events-10ms"}},
			want:     map[string]string{"web": "aggregate-5000ms"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newDB("a", 1)
			db.SetLocal(links("b", 1, "c", 5, "d", 5), map[string]int{"web": 1, "rpc": 1})
			db.SetLocalMulticast(tt.local)
			for _, s := range []string{"b", "c", "d"} {
				r := withMulticast(rec(s, 1, 1, links("a", 1), map[string]int{"web": 1, "rpc": 1}), tt.declared[s])
				if s != "b" {
					r.Links = links("a", 5)
				}
				if !apply(db, r) {
					t.Fatalf("Apply(%s) = false", s)
				}
			}
			if diff := cmp.Diff(db.View().Multicast, tt.want); diff != "" {
				t.Errorf("view multicast (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(db.Document().Multicast, tt.want); diff != "" {
				t.Errorf("document multicast (-got +want):\n%s", diff)
			}
		})
	}
}

// A change of a peer's multicast modes alone is a change of the view and
// of the document's version.
func TestMulticastChangeView(t *testing.T) {
	db := newDB("a", 1)
	db.SetLocal(links("b", 1), nil)
	b := rec("b", 1, 1, links("a", 1), map[string]int{"web": 1})
	apply(db, b)
	before := db.View()
	if before.Multicast != nil {
		t.Fatalf("multicast %v before any was declared", before.Multicast)
	}
	version := db.Document().Version
	changed := db.Changed()
	b.Seq++
	if !apply(db, withMulticast(b, map[string]string{"web": "events-500ms"})) {
		t.Fatal("newer record refused")
	}
	select {
	case <-changed:
	default:
		t.Error("a record whose multicast changed did not change the view")
	}
	if got := db.View().Multicast["web"]; got != "events-500ms" {
		t.Errorf("view multicast of web = %q, want events-500ms", got)
	}
	if db.Document().Version == version {
		t.Error("the document's version did not change with its multicast")
	}
}
