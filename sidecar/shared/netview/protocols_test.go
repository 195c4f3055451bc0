package netview

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// withProtocols returns r declaring protocols.
func withProtocols(r Record, protocols map[string]string) Record {
	r.Protocols = protocols
	return r
}

// A record declares protocols of its addresses by name, for addresses a
// record may name; a name this version does not know is accepted (and
// read as tcp), so that a newer site's records are not refused.
func TestRecordProtocols(t *testing.T) {
	many := map[string]string{}
	for i := range MaxAddresses + 1 {
		many[fmt.Sprintf("a%d", i)] = "http"
	}
	base := rec("west", 1, 1, nil, map[string]int{"web": 1})
	tests := []struct {
		name      string
		protocols map[string]string
		wantMsg   string // a part of the error; "" for a valid record
	}{
		{name: "none", protocols: nil},
		{name: "http", protocols: map[string]string{"web": "http"}},
		{name: "every HTTP protocol", protocols: map[string]string{"web": "http", "api:8080": "http2", "rpc.prod:9000": "grpc"}},
		{name: "an address without endpoints", protocols: map[string]string{"gone": "http"}},
		{name: "tcp, said anyway", protocols: map[string]string{"web": "tcp"}},
		{name: "empty protocol", protocols: map[string]string{"web": ""}, wantMsg: `bad protocol "" for address "web"`},
		{name: "not canonical: case", protocols: map[string]string{"web": "HTTP"}, wantMsg: `bad protocol "HTTP" for address "web"`},
		{name: "not canonical: space", protocols: map[string]string{"web": " grpc"}, wantMsg: `bad protocol " grpc" for address "web"`},
		{name: "a protocol a newer site knows", protocols: map[string]string{"web": "http3"}},
		{name: "long protocol is clipped", protocols: map[string]string{"web": strings.Repeat("h", 100)}, wantMsg: `bad protocol "` + strings.Repeat("h", 64) + `…"`},
		{name: "empty address", protocols: map[string]string{"": "http"}, wantMsg: "protocols: "},
		{name: "address with a space", protocols: map[string]string{"x y": "http"}, wantMsg: "protocols: "},
		{name: "too many", protocols: many, wantMsg: fmt.Sprintf("%d protocol entries, at most %d", MaxAddresses+1, MaxAddresses)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := withProtocols(base, tt.protocols)
			checkValidation(t, r, tt.wantMsg)
		})
	}
}

// The record's signature covers its protocols: a transit gateway (or
// anyone on the way) cannot add, change or drop one.
func TestSignatureCoversProtocols(t *testing.T) {
	signed := func(r Record) []byte { return signedWire(t, r) }
	edit := func(wire []byte, old, new string) []byte { return editSigned(t, wire, old, new) }
	plain := rec("west", now0.UnixNano(), 3, map[string]int{"east": 2}, map[string]int{"web": 1, "api": 1})
	declared := withProtocols(plain, map[string]string{"web": "http"})
	tests := []struct {
		name string
		wire []byte
	}{
		{"protocol changed", edit(signed(declared), `"protocols":{"web":"http"}`, `"protocols":{"web":"grpc"}`)},
		{"protocol added", edit(signed(declared), `"protocols":{"web":"http"}`, `"protocols":{"api":"http2","web":"http"}`)},
		{"protocols dropped", edit(signed(declared), `,"protocols":{"web":"http"}`, ``)},
		{"protocols added to a record without", edit(signed(plain), `"seq":3,`, `"seq":3,"protocols":{"web":"http"},`)},
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
	if diff := cmp.Diff(got.Protocols, declared.Protocols); diff != "" {
		t.Errorf("opened protocols (-got +want):\n%s", diff)
	}
}

// SetLocalProtocols keeps what peers accept, in canonical names, bumps
// Seq only on a change, and later changes of the record's other content
// keep the protocols.
func TestSetLocalProtocols(t *testing.T) {
	tests := []struct {
		name        string
		protocols   map[string]string
		wantChanged bool
		want        map[string]string
	}{
		{"none is no change", nil, false, nil},
		{"tcp, unknown and unnamed are dropped", map[string]string{"db": "tcp", "x": "", "y": "websocket", "": "http"}, false, nil},
		{"canonical names", map[string]string{"web": " HTTP ", "rpc": "grpc", "db": "tcp"}, true, map[string]string{"web": "http", "rpc": "grpc"}},
		{"the same again", map[string]string{"web": "http", "rpc": "GRPC"}, false, map[string]string{"web": "http", "rpc": "grpc"}},
		{"a protocol changes", map[string]string{"web": "http2", "rpc": "grpc"}, true, map[string]string{"web": "http2", "rpc": "grpc"}},
		{"all gone", map[string]string{}, true, nil},
	}
	db := newDB("a", 10)
	seq := db.Local().Seq
	for _, tt := range tests {
		got, changed := db.SetLocalProtocols(tt.protocols)
		if changed != tt.wantChanged {
			t.Errorf("%s: changed = %v, want %v", tt.name, changed, tt.wantChanged)
		}
		if tt.wantChanged {
			seq++
		}
		if got.Seq != seq {
			t.Errorf("%s: seq %d, want %d", tt.name, got.Seq, seq)
		}
		if diff := cmp.Diff(got.Protocols, tt.want); diff != "" {
			t.Errorf("%s: protocols (-got +want):\n%s", tt.name, diff)
		}
		if _, err := Sign(got, testKey("a")); err != nil {
			t.Errorf("%s: the local record cannot be signed: %v", tt.name, err)
		}
	}
	db.SetLocalProtocols(map[string]string{"web": "http"})
	r, _ := db.SetLocal(map[string]int{"b": 1}, map[string]int{"web": 2})
	if diff := cmp.Diff(r.Protocols, map[string]string{"web": "http"}); diff != "" {
		t.Errorf("protocols after SetLocal (-got +want):\n%s", diff)
	}
	if _, changed := db.SetLocal(map[string]int{"b": 1}, map[string]int{"web": 2}); changed {
		t.Error("SetLocal of the same links and addresses reported a change")
	}
}

// A sidecar's local record takes the protocols of its gateway's record.
func TestMirrorTakesProtocols(t *testing.T) {
	db := newDB("east", 10)
	e1 := withProtocols(routerRec("east", "e1", 1, nil, map[string]int{"web": 1}), map[string]string{"web": "grpc"})
	if !mirror(t, db, e1) {
		t.Fatal("the gateway's record changed nothing")
	}
	if diff := cmp.Diff(db.Local().Protocols, map[string]string{"web": "grpc"}); diff != "" {
		t.Errorf("local protocols after Mirror (-got +want):\n%s", diff)
	}
}

// The view declares per address the protocol of the first of its sorted
// targets (by cost, then site) that declares one; the document carries
// it. Here a links to b at 1, to c at 5 and to d at 5.
func TestViewProtocols(t *testing.T) {
	tests := []struct {
		name     string
		local    map[string]string            // a's own declarations
		declared map[string]map[string]string // by site
		want     map[string]string
	}{
		{name: "none declared", want: nil},
		{
			name:     "the cheapest site that declares one",
			declared: map[string]map[string]string{"b": {"web": "http"}, "c": {"web": "grpc"}},
			want:     map[string]string{"web": "http"},
		},
		{
			name:     "a nearer site that declares none is passed over",
			declared: map[string]map[string]string{"c": {"web": "http2"}},
			want:     map[string]string{"web": "http2"},
		},
		{
			name:     "among equal costs, by site name",
			declared: map[string]map[string]string{"d": {"web": "grpc"}, "c": {"web": "http2"}},
			want:     map[string]string{"web": "http2"},
		},
		{
			name:     "the local site is the cheapest",
			local:    map[string]string{"web": "grpc"},
			declared: map[string]map[string]string{"b": {"web": "http"}},
			want:     map[string]string{"web": "grpc"},
		},
		{
			name:     "per address",
			declared: map[string]map[string]string{"b": {"web": "http"}, "c": {"rpc": "grpc"}},
			want:     map[string]string{"web": "http", "rpc": "grpc"},
		},
		{
			name:     "an address no reachable site serves is left out",
			declared: map[string]map[string]string{"b": {"web": "http", "gone": "http"}},
			want:     map[string]string{"web": "http"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newDB("a", 1)
			db.SetLocal(links("b", 1, "c", 5, "d", 5), map[string]int{"web": 1, "rpc": 1})
			db.SetLocalProtocols(tt.local)
			for _, s := range []string{"b", "c", "d"} {
				r := withProtocols(rec(s, 1, 1, links("a", 1), map[string]int{"web": 1, "rpc": 1}), tt.declared[s])
				if s != "b" {
					r.Links = links("a", 5)
				}
				if !apply(db, r) {
					t.Fatalf("Apply(%s) = false", s)
				}
			}
			if diff := cmp.Diff(db.View().Protocols, tt.want); diff != "" {
				t.Errorf("view protocols (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(db.Document().Protocols, tt.want); diff != "" {
				t.Errorf("document protocols (-got +want):\n%s", diff)
			}
		})
	}
}

// A change of a peer's protocols alone is a change of the view.
func TestProtocolsChangeView(t *testing.T) {
	db := newDB("a", 1)
	db.SetLocal(links("b", 1), nil)
	b := rec("b", 1, 1, links("a", 1), map[string]int{"web": 1})
	apply(db, b)
	before := db.View()
	if before.Protocols != nil {
		t.Fatalf("protocols %v before any was declared", before.Protocols)
	}
	changed := db.Changed()
	b.Seq++
	if !apply(db, withProtocols(b, map[string]string{"web": "http"})) {
		t.Fatal("newer record refused")
	}
	select {
	case <-changed:
	default:
		t.Error("a record whose protocols changed did not change the view")
	}
	if got := db.View().Protocols["web"]; got != "http" {
		t.Errorf("view protocol of web = %q, want http", got)
	}
}
