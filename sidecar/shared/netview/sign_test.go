package netview

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var now0 = time.Unix(1_800_000_000, 0)

func TestSignOpen(t *testing.T) {
	r := rec("west", now0.UnixNano(), 3, map[string]int{"east": 2}, map[string]int{"backend:8080": 2})
	s, err := Sign(r, testKey("west"))
	if err != nil {
		t.Fatalf("Sign() error = %v", err)
	}
	got, err := Open(s.Wire(), now0)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	if diff := cmp.Diff(got.Record, r); diff != "" {
		t.Errorf("Open() (-got +want):\n%s", diff)
	}
	if !bytes.Equal(got.Wire(), s.Wire()) {
		t.Errorf("Open() wire form differs from what was signed")
	}
}

func TestOpenRefuses(t *testing.T) {
	good := rec("west", now0.UnixNano(), 3, map[string]int{"east": 2}, nil)
	signed := func(r Record, site string) []byte {
		t.Helper()
		s, err := Sign(r, testKey(site))
		if err != nil {
			t.Fatalf("Sign() error = %v", err)
		}
		return s.Wire()
	}
	// tamper decodes the envelope, lets f change it and encodes it again.
	tamper := func(wire []byte, f func(env *envelope)) []byte {
		var env envelope
		if err := json.Unmarshal(wire, &env); err != nil {
			t.Fatal(err)
		}
		f(&env)
		b, _ := json.Marshal(env)
		return b
	}
	bare, _ := json.Marshal(Record{Version: 2, Site: "west", Epoch: 1, Seq: 1})
	forged := good
	forged.Key = testKeyID("west") // claims west's key, signed by another
	forgedWire := func() []byte {
		body, _ := Encode(forged)
		s, _ := Sign(Record{Version: 2, Site: "evil", Epoch: 1, Seq: 1}, testKey("evil"))
		var env envelope
		_ = json.Unmarshal(s.Wire(), &env)
		env.Record = body
		b, _ := json.Marshal(env)
		return b
	}()
	tests := []struct {
		name    string
		wire    []byte
		wantErr error
	}{
		{"v1 record, unsigned", []byte(`{"v":1,"site":"west","epoch":9223372036854775807,"seq":1}`), ErrVersion},
		{"v2 record, unsigned", bare, ErrSignature},
		{"body changed after signing", tamper(signed(good, "west"), func(env *envelope) {
			env.Record = bytes.Replace(env.Record, []byte(`"east":2`), []byte(`"east":1`), 1)
		}), ErrSignature},
		{"signature of another key", forgedWire, ErrSignature},
		{"no signature", tamper(signed(good, "west"), func(env *envelope) { env.Sig = nil }), ErrSignature},
		{"no key", tamper(signed(good, "west"), func(env *envelope) {
			env.Record = bytes.Replace(env.Record, []byte(`"key":"`+testKeyID("west")+`",`), nil, 1)
		}), ErrSignature},
		{"epoch far in the future", signed(rec("west", math.MaxInt64, 1, nil, nil), "west"), ErrInvalidRecord},
		{"oversized", append(signed(good, "west"), bytes.Repeat([]byte(" "), MaxRecordBytes)...), ErrInvalidRecord},
		{"not JSON", []byte("\x00\x01"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.wire, now0)
			if err == nil {
				t.Fatalf("Open() succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Open() error = %v, want %v", err, tt.wantErr)
			}
			if len(err.Error()) > 400 {
				t.Errorf("Open() error of %d bytes: a peer can make log lines long", len(err.Error()))
			}
		})
	}
}

func TestEpochWithinSkewAccepted(t *testing.T) {
	s, err := Sign(rec("west", now0.Add(MaxClockSkew-time.Second).UnixNano(), 1, nil, nil), testKey("west"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Wire(), now0); err != nil {
		t.Errorf("Open() of a record %s ahead: %v", MaxClockSkew-time.Second, err)
	}
}

// signedBy signs r with the test key of site signer.
func signedBy(t *testing.T, r Record, signer string) Signed {
	t.Helper()
	s, err := Sign(r, testKey(signer))
	if err != nil {
		t.Fatalf("Sign() error = %v", err)
	}
	return s
}

func TestKeyHoldsName(t *testing.T) {
	db := newDB("east", 10)
	db.SetLocal(map[string]int{"west": 1}, nil)
	real := signedBy(t, rec("west", 5, 1, map[string]int{"east": 1}, map[string]int{"backend": 1}), "west")
	if ok, err := db.Apply(real); !ok || err != nil {
		t.Fatalf("Apply(west's record) = %v, %v", ok, err)
	}
	// A linked peer signs a record for west with its own key, with the
	// largest epoch there is: refused, west's record stays.
	forged := signedBy(t, rec("west", now0.UnixNano(), MaxSeq, map[string]int{"east": 1}, nil), "mallory")
	ok, err := db.Apply(forged)
	if ok || !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("Apply(forged record) = %v, %v; want ErrKeyConflict", ok, err)
	}
	if got := db.View().Addresses["backend"]; len(got) != 1 || got[0].Site != "west" {
		t.Errorf("after the forged record, backend is served by %v, want west", got)
	}
	// Nor can a link bind west to another key, or claim east.
	if err := db.Bind("west", testKeyID("mallory")); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("Bind(west, mallory's key) error = %v, want ErrKeyConflict", err)
	}
	if err := db.Bind("east", testKeyID("mallory")); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("Bind(east, mallory's key) error = %v, want ErrKeyConflict", err)
	}
	if _, err := db.Apply(signedBy(t, rec("east", 99, 99, nil, nil), "mallory")); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("Apply(record for this site by another key) error = %v, want ErrKeyConflict", err)
	}
	// Our own record, flooded back to us, is no conflict.
	own, err := db.LocalSigned()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := db.Apply(own); ok || err != nil {
		t.Errorf("Apply(own record) = %v, %v; want false, nil", ok, err)
	}
	if got := db.HolderOf("west"); got != testKeyID("west") {
		t.Errorf("HolderOf(west) = %s", Fingerprint(got))
	}
}

func TestBindBeforeRecord(t *testing.T) {
	db := newDB("east", 10)
	if err := db.Bind("west", testKeyID("west")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Apply(signedBy(t, rec("west", 5, 1, nil, nil), "mallory")); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("record by another key after a link bound the name: error = %v, want ErrKeyConflict", err)
	}
	if ok, err := db.Apply(signedBy(t, rec("west", 5, 1, nil, nil), "west")); !ok || err != nil {
		t.Errorf("record by the bound key = %v, %v", ok, err)
	}
}

func TestRecordsAgeOut(t *testing.T) {
	clock := now0
	db := newDB("east", 10, WithClock(func() time.Time { return clock }))
	db.SetLocal(map[string]int{"west": 1}, nil)
	apply(db, rec("west", 5, 1, map[string]int{"east": 1}, map[string]int{"backend": 1}))
	clock = clock.Add(DefaultMaxAge / 2)
	apply(db, rec("west", 5, 2, map[string]int{"east": 1}, map[string]int{"backend": 1})) // a refresh
	clock = clock.Add(DefaultMaxAge/2 + time.Second)
	if got := db.Expire(DefaultMaxAge); len(got) != 0 {
		t.Fatalf("Expire() dropped %v though west refreshed its record", got)
	}
	clock = clock.Add(DefaultMaxAge)
	if got := db.Expire(DefaultMaxAge); !cmp.Equal(got, []string{"west"}) {
		t.Fatalf("Expire() = %v, want [west]", got)
	}
	if len(db.View().Addresses["backend"]) != 0 {
		t.Errorf("an aged-out record still serves backend")
	}
	// The name stays held for BindingTTL, then is free.
	if _, err := db.Apply(signedBy(t, rec("west", 6, 1, nil, nil), "mallory")); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("name free right after the record aged out: %v", err)
	}
	clock = clock.Add(BindingTTL + time.Minute)
	db.Expire(DefaultMaxAge)
	if ok, err := db.Apply(signedBy(t, rec("west", 7, 1, nil, nil), "newwest")); !ok || err != nil {
		t.Errorf("name still held %s after west was last seen: %v, %v", BindingTTL, ok, err)
	}
}

func TestRefreshBumpsSeqOnly(t *testing.T) {
	db := newDB("east", 10)
	db.SetLocal(map[string]int{"west": 1}, nil)
	v := db.View()
	before, _ := db.LocalSigned()
	r := db.Refresh()
	after, err := db.LocalSigned()
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != before.Seq+1 || after.Seq != r.Seq || !after.sameContent(before.Record) {
		t.Errorf("Refresh(): seq %d -> %d (signed %d)", before.Seq, r.Seq, after.Seq)
	}
	if db.View() != v {
		t.Errorf("Refresh() invalidated the view; the content did not change")
	}
}

func FuzzOpen(f *testing.F) {
	s, _ := Sign(rec("west", now0.UnixNano(), 3, map[string]int{"east": 2}, map[string]int{"backend": 1}), testKey("west"))
	f.Add(s.Wire())
	rolled := rec("west", now0.UnixNano(), 4, map[string]int{"east": 2}, nil)
	rolled.Prev, _ = Endorse("west", testKeyID("west2"), testKey("west"))
	s, _ = Sign(rolled, testKey("west2"))
	f.Add(s.Wire())
	declared := rec("west", now0.UnixNano(), 5, map[string]int{"east": 2}, map[string]int{"web": 1})
	declared.Routing = map[string]string{"web": "closest"}
	declared.Protocols = map[string]string{"web": "http2"}
	s, _ = Sign(declared, testKey("west"))
	f.Add(s.Wire())
	declared.Seq++
	declared.Routing = map[string]string{"web": "multicast"}
	declared.Multicast = map[string]string{"web": "events-250ms"}
	s, _ = Sign(declared, testKey("west"))
	f.Add(s.Wire())
	f.Add([]byte(`{"record":"e30=","sig":"AA=="}`))
	f.Add([]byte(`{"v":1,"site":"a","epoch":7,"seq":3}`))
	f.Add([]byte(strings.Repeat("[", 1000)))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Open(b, now0)
		if err != nil {
			return
		}
		// What opens is a valid record whose signature verifies again,
		// and the DB takes it or says why not.
		if _, err := Open(got.Wire(), now0); err != nil {
			t.Fatalf("Open(Open(b).Wire()) error = %v", err)
		}
		db := newDB("fuzz-self", 1)
		if _, err := db.Apply(got); err != nil && !errors.Is(err, ErrKeyConflict) {
			t.Fatalf("Apply(opened record) error = %v", err)
		}
	})
}
