package netview

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewer(t *testing.T) {
	tests := []struct {
		name   string
		r, old Record
		want   bool
	}{
		{"higher seq", Record{Epoch: 5, Seq: 3}, Record{Epoch: 5, Seq: 2}, true},
		{"same seq", Record{Epoch: 5, Seq: 3}, Record{Epoch: 5, Seq: 3}, false},
		{"lower seq", Record{Epoch: 5, Seq: 2}, Record{Epoch: 5, Seq: 3}, false},
		{"restart beats any seq", Record{Epoch: 6, Seq: 1}, Record{Epoch: 5, Seq: 900}, true},
		{"old epoch loses", Record{Epoch: 5, Seq: 900}, Record{Epoch: 6, Seq: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Newer(tt.old); got != tt.want {
				t.Errorf("Newer() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    Record
	}{
		{"bare", Record{Version: 2, Site: "east", Epoch: 1700000000000000000, Seq: 1}},
		{"full", Record{
			Version: 2, Site: "east", Router: "skiff-gateway-7d9f-x2x", Key: testKeyID("east"), Epoch: 42, Seq: MaxSeq,
			Links:     map[string]int{"west": 1, "north": MaxCost},
			Addresses: map[string]int{"backend": 3, "db:5432": 0},
			Routing:   map[string]string{"backend": "closest"},
			Protocols: map[string]string{"backend": "grpc"},
			Multicast: map[string]string{"backend": "events-250ms"},
		}},
		{"rotating", Record{
			Version: 2, Site: "east", Key: testKeyID("east2"), Epoch: 42, Seq: 7,
			Prev: &Rollover{Key: testKeyID("east"), Sig: []byte{0x30, 1, 2}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.r)
			if err != nil {
				t.Fatalf("Encode() error = %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s) error = %v", b, err)
			}
			if diff := cmp.Diff(got, tt.r); diff != "" {
				t.Errorf("round trip of %s (-got +want):\n%s", b, diff)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name    string
		r       Record
		want    string
		wantErr error
	}{
		{"zero version written as current", Record{Site: "a", Epoch: 1, Seq: 2}, `{"v":2,"site":"a","epoch":1,"seq":2}`, nil},
		{"maps", Record{Version: 2, Site: "a", Epoch: 1, Seq: 1, Links: map[string]int{"b": 2}, Addresses: map[string]int{"x": 1}}, `{"v":2,"site":"a","epoch":1,"seq":1,"links":{"b":2},"addresses":{"x":1}}`, nil},
		{"unsigned v1", Record{Version: 1, Site: "a", Epoch: 1, Seq: 1}, "", ErrVersion},
		{"future version", Record{Version: 3, Site: "a", Epoch: 1, Seq: 1}, "", ErrVersion},
		{"no site", Record{Version: 2, Epoch: 1, Seq: 1}, "", ErrInvalidRecord},
		{"zero cost", Record{Version: 2, Site: "a", Epoch: 1, Seq: 1, Links: map[string]int{"b": 0}}, "", ErrInvalidRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Encode() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(string(b), tt.want); diff != "" {
				t.Errorf("Encode() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name    string
		in      string
		want    Record
		wantErr error  // checked with errors.Is
		wantMsg string // full message, when set
	}{
		{
			name: "minimal",
			in:   `{"v":2,"site":"a","epoch":7,"seq":3}`,
			want: Record{Version: 2, Site: "a", Epoch: 7, Seq: 3},
		},
		{
			name: "unknown fields from a newer minor version are ignored",
			in:   `{"v":2,"site":"a","epoch":7,"seq":3,"links":{"b":2},"region":"eu","labels":{"x":[1,2]}}`,
			want: Record{Version: 2, Site: "a", Epoch: 7, Seq: 3, Links: map[string]int{"b": 2}},
		},
		{
			name: "empty maps decode as nil",
			in:   `{"v":2,"site":"a","epoch":1,"seq":1,"links":{},"addresses":{}}`,
			want: Record{Version: 2, Site: "a", Epoch: 1, Seq: 1},
		},
		{
			name: "zero endpoints allowed",
			in:   `{"v":2,"site":"a","epoch":1,"seq":1,"addresses":{"x":0}}`,
			want: Record{Version: 2, Site: "a", Epoch: 1, Seq: 1, Addresses: map[string]int{"x": 0}},
		},
		{
			name:    "unsigned v1 record",
			in:      `{"v":1,"site":"west","epoch":7,"seq":3,"links":{"b":-5}}`,
			wantErr: ErrVersion,
			wantMsg: `site record v1 from "west", this gateway understands v2: unsupported site record version`,
		},
		{
			name:    "missing version",
			in:      `{"site":"west"}`,
			wantErr: ErrVersion,
			wantMsg: `site record v0 from "west", this gateway understands v2: unsupported site record version`,
		},
		{name: "negative version", in: `{"v":-1,"site":"a"}`, wantErr: ErrVersion},
		{name: "missing site", in: `{"v":2,"epoch":7,"seq":1}`, wantErr: ErrInvalidRecord},
		{name: "site with a path", in: `{"v":2,"site":"../../etc","epoch":7,"seq":1}`, wantErr: ErrInvalidRecord},
		{name: "site with a newline", in: `{"v":2,"site":"a\nb","epoch":7,"seq":1}`, wantErr: ErrInvalidRecord},
		{name: "site of 64 characters", in: `{"v":2,"site":"` + long + `","epoch":7,"seq":1}`, wantErr: ErrInvalidRecord},
		{name: "bad router", in: `{"v":2,"site":"a","router":"x/y/z","epoch":7,"seq":1}`, wantErr: ErrInvalidRecord},
		{name: "zero epoch", in: `{"v":2,"site":"a","epoch":0,"seq":1}`, wantErr: ErrInvalidRecord},
		{name: "zero seq", in: `{"v":2,"site":"a","epoch":1,"seq":0}`, wantErr: ErrInvalidRecord},
		{name: "absurd seq", in: `{"v":2,"site":"a","epoch":1,"seq":18446744073709551615}`, wantErr: ErrInvalidRecord},
		{name: "zero cost", in: `{"v":2,"site":"a","epoch":1,"seq":1,"links":{"b":0}}`, wantErr: ErrInvalidRecord},
		{name: "negative cost", in: `{"v":2,"site":"a","epoch":1,"seq":1,"links":{"b":-1}}`, wantErr: ErrInvalidRecord},
		{name: "cost above MaxCost", in: `{"v":2,"site":"a","epoch":1,"seq":1,"links":{"b":16777217}}`, wantErr: ErrInvalidRecord},
		{name: "link to itself", in: `{"v":2,"site":"a","epoch":1,"seq":1,"links":{"a":1}}`, wantErr: ErrInvalidRecord},
		{name: "link to unnamed site", in: `{"v":2,"site":"a","epoch":1,"seq":1,"links":{"":1}}`, wantErr: ErrInvalidRecord},
		{name: "link to a bad name", in: `{"v":2,"site":"a","epoch":1,"seq":1,"links":{"B/../c":1}}`, wantErr: ErrInvalidRecord},
		{name: "negative endpoints", in: `{"v":2,"site":"a","epoch":1,"seq":1,"addresses":{"x":-1}}`, wantErr: ErrInvalidRecord},
		{name: "absurd endpoints", in: `{"v":2,"site":"a","epoch":1,"seq":1,"addresses":{"x":1073741824}}`, wantErr: ErrInvalidRecord},
		{name: "empty address", in: `{"v":2,"site":"a","epoch":1,"seq":1,"addresses":{"":1}}`, wantErr: ErrInvalidRecord},
		{name: "address with a space", in: `{"v":2,"site":"a","epoch":1,"seq":1,"addresses":{"x y":1}}`, wantErr: ErrInvalidRecord},
		{name: "bad routing pattern", in: `{"v":2,"site":"a","epoch":1,"seq":1,"routing":{"x":"Closest!"}}`, wantErr: ErrInvalidRecord},
		{
			name: "protocols",
			in:   `{"v":2,"site":"a","epoch":1,"seq":1,"protocols":{"x":"http","y":"http2","z":"grpc"}}`,
			want: Record{Version: 2, Site: "a", Epoch: 1, Seq: 1, Protocols: map[string]string{"x": "http", "y": "http2", "z": "grpc"}},
		},
		{
			name: "a protocol this version does not know",
			in:   `{"v":2,"site":"a","epoch":1,"seq":1,"protocols":{"x":"h3"}}`,
			want: Record{Version: 2, Site: "a", Epoch: 1, Seq: 1, Protocols: map[string]string{"x": "h3"}},
		},
		{
			name:    "protocol not a name",
			in:      `{"v":2,"site":"a","epoch":1,"seq":1,"protocols":{"x":"h t t p"}}`,
			wantErr: ErrInvalidRecord,
			wantMsg: `site record from "a": bad protocol "h t t p" for address "x": invalid site record`,
		},
		{name: "protocol not canonical", in: `{"v":2,"site":"a","epoch":1,"seq":1,"protocols":{"x":"Http"}}`, wantErr: ErrInvalidRecord},
		{name: "protocol of a bad address", in: `{"v":2,"site":"a","epoch":1,"seq":1,"protocols":{"x y":"http"}}`, wantErr: ErrInvalidRecord},
		{
			name: "multicast",
			in:   `{"v":2,"site":"a","epoch":1,"seq":1,"multicast":{"x":"aggregate-5000ms","y":"events-1ms"}}`,
			want: Record{Version: 2, Site: "a", Epoch: 1, Seq: 1, Multicast: map[string]string{"x": "aggregate-5000ms", "y": "events-1ms"}},
		},
		{
			name: "a multicast mode this version cannot parse",
			in:   `{"v":2,"site":"a","epoch":1,"seq":1,"multicast":{"x":"quorum-5000ms"}}`,
			want: Record{Version: 2, Site: "a", Epoch: 1, Seq: 1, Multicast: map[string]string{"x": "quorum-5000ms"}},
		},
		{
			name:    "multicast not a name",
			in:      `{"v":2,"site":"a","epoch":1,"seq":1,"multicast":{"x":"events 5s"}}`,
			wantErr: ErrInvalidRecord,
			wantMsg: `site record from "a": bad multicast "events 5s" for address "x": invalid site record`,
		},
		{name: "multicast of a bad address", in: `{"v":2,"site":"a","epoch":1,"seq":1,"multicast":{"x y":"events-5000ms"}}`, wantErr: ErrInvalidRecord},
		{
			name: "endorsed key",
			in:   `{"v":2,"site":"a","key":"k2","epoch":1,"seq":1,"prev":{"key":"k1","sig":"AQI="}}`,
			want: Record{Version: 2, Site: "a", Key: "k2", Epoch: 1, Seq: 1, Prev: &Rollover{Key: "k1", Sig: []byte{1, 2}}},
		},
		{name: "endorsement by no key", in: `{"v":2,"site":"a","key":"k2","epoch":1,"seq":1,"prev":{"sig":"AQI="}}`, wantErr: ErrInvalidRecord},
		{name: "endorsement by a key too long", in: `{"v":2,"site":"a","key":"k2","epoch":1,"seq":1,"prev":{"key":"` + strings.Repeat("k", maxKeyID+1) + `","sig":"AQI="}}`, wantErr: ErrInvalidRecord},
		{name: "endorsement too long", in: `{"v":2,"site":"a","key":"k2","epoch":1,"seq":1,"prev":{"key":"k1","sig":"` + base64.StdEncoding.EncodeToString(make([]byte, maxRolloverSig+1)) + `"}}`, wantErr: ErrInvalidRecord},
		{name: "key endorses itself", in: `{"v":2,"site":"a","key":"k1","epoch":1,"seq":1,"prev":{"key":"k1","sig":"AQI="}}`, wantErr: ErrInvalidRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decode() error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("Decode() error = %q, want %q", err, tt.wantMsg)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Decode() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, in := range []string{``, `{`, `[]`, `{"v":"1","site":"a"}`, `{"v":1,"site":"a","seq":-1}`, `{"v":1,"site":"a"} x`} {
		t.Run(in, func(t *testing.T) {
			if _, err := Decode([]byte(in)); err == nil {
				t.Errorf("Decode(%q) succeeded, want an error", in)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"v":2,"site":"a","epoch":7,"seq":3,"links":{"b":2,"c":1},"addresses":{"x":3}}`,
		`{"v":2,"site":"b","router":"ns/pod-1","epoch":7,"seq":3,"links":{"a":2},"unknown":true}`,
		`{"v":1,"site":"a"}`,
		`{"v":2,"site":"a","epoch":1,"seq":1,"links":{"b":0}}`,
		`{"v":2,"site":"a","epoch":1,"seq":1,"links":{"a":1},"addresses":{"":1}}`,
		`{"v":2,"site":"a","key":"k2","epoch":1,"seq":1,"prev":{"key":"k1","sig":"AQI="}}`,
		`{"v":2,"site":"a","epoch":1,"seq":1,"prev":{"key":"","sig":null}}`,
		`{"v":2,"site":"a","epoch":1,"seq":1,"addresses":{"web":1},"routing":{"web":"closest"},"protocols":{"web":"http","rpc:9000":"grpc"}}`,
		`{"v":2,"site":"a","epoch":1,"seq":1,"protocols":{"web":"tcp"}}`,
		`{"v":2,"site":"a","epoch":1,"seq":1,"protocols":{"web":"HTTP2","":"http"}}`,
		`{"v":2,"site":"a","epoch":1,"seq":1,"addresses":{"web":1},"routing":{"web":"multicast"},"protocols":{"web":"http"},"multicast":{"web":"events-250ms","hook:80":"quorum-1ms"}}`,
		`{"v":2,"site":"a","epoch":1,"seq":1,"multicast":{"web":"Aggregate-5000ms","":"events-1ms"}}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		// What Decode accepts, Encode writes and Decode reads back the same.
		enc, err := Encode(r)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) error = %v", b, err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %q: %v", b, enc, err)
		}
		if diff := cmp.Diff(again, r); diff != "" {
			t.Fatalf("re-decoded record (-got +want):\n%s", diff)
		}
		// And the DB takes it without trouble.
		db := newDB("fuzz-self", 1)
		db.SetLocal(map[string]int{r.Site: 1}, map[string]int{"x": 1})
		if !apply(db, r) && r.Site != "fuzz-self" {
			t.Fatalf("Apply(%+v) = false on an empty DB", r)
		}
		v := db.View()
		for site, rt := range v.Routes {
			if rt.Cost < 1 || rt.Hops < 1 || rt.Site != site {
				t.Fatalf("bad route %+v", rt)
			}
		}
	})
}
