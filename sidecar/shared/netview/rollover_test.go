package netview

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// rolled returns r signed by the test key of signer with the test key of
// endorser endorsing it ("": no endorsement), as Open returns it.
func rolled(t *testing.T, r Record, signer, endorser string) Signed {
	t.Helper()
	if endorser != "" {
		r.Prev = endorsed(t, r.Site, signer, endorser)
	}
	s, err := Open(signedBy(t, r, signer).Wire(), now0)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	return s
}

// keyIDs returns the test keys' IDs of names.
func keyIDs(names ...string) []string {
	var ids []string
	for _, n := range names {
		ids = append(ids, testKeyID(n))
	}
	return ids
}

// fired reports whether ch is closed.
func fired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// rolloverStep is a record of site (or a link to it) that a DB is given,
// and what the DB holds for the site afterwards.
type rolloverStep struct {
	name     string
	router   string // the site's gateway that sends the record
	signer   string // test key that signs the record, or that the link proves
	endorser string // test key that endorses signer's ("": none)
	link     bool   // Bind(site, signer) instead of a record

	wantErr     error
	wantKeys    []string // KeysOf(site), test key names
	wantChanged bool     // whether Changed fired
}

// runRollover gives db the steps for site in order, each record newer
// than the one before.
func runRollover(t *testing.T, db *DB, site string, steps []rolloverStep) {
	t.Helper()
	for i, s := range steps {
		changed := db.Changed()
		var err error
		if s.link {
			err = db.Bind(site, testKeyID(s.signer))
		} else {
			r := rec(site, 5, uint64(i+1), nil, nil)
			r.Router = s.router
			_, err = db.Apply(rolled(t, r, s.signer, s.endorser))
		}
		if !errors.Is(err, s.wantErr) {
			t.Errorf("step %d (%s): error = %v, want %v", i, s.name, err, s.wantErr)
		}
		if errors.Is(err, ErrKeyConflict) && !slices.ContainsFunc(db.Conflicts(), func(c Conflict) bool {
			return c.Site == site && c.Key == Fingerprint(testKeyID(s.signer))
		}) {
			t.Errorf("step %d (%s): conflict not listed in %+v", i, s.name, db.Conflicts())
		}
		if diff := cmp.Diff(db.KeysOf(site), keyIDs(s.wantKeys...)); diff != "" {
			t.Errorf("step %d (%s): KeysOf(%s) (-got +want):\n%s", i, s.name, site, diff)
		}
		if got := fired(changed); got != s.wantChanged {
			t.Errorf("step %d (%s): Changed fired = %v, want %v", i, s.name, got, s.wantChanged)
		}
	}
}

// A peer site rolls its key over from west to west2: records and links of
// both keys are held while it rotates, only west2's once it finished.
func TestPeerRollover(t *testing.T) {
	tests := []struct {
		name  string
		steps []rolloverStep
	}{
		{
			name: "rotation",
			steps: []rolloverStep{
				{name: "first record", signer: "west", wantKeys: []string{"west"}, wantChanged: true},
				{name: "record by the new key, endorsed", signer: "west2", endorser: "west", wantKeys: []string{"west2", "west"}, wantChanged: true},
				{name: "again: nothing moves", signer: "west2", endorser: "west", wantKeys: []string{"west2", "west"}},
				{name: "gateway not reloaded yet", signer: "west", wantKeys: []string{"west2", "west"}},
				{name: "link proved by the previous key", signer: "west", link: true, wantKeys: []string{"west2", "west"}},
				{name: "link proved by the new key", signer: "west2", link: true, wantKeys: []string{"west2", "west"}},
				{name: "rotation finished", signer: "west2", wantKeys: []string{"west2"}, wantChanged: true},
				{name: "record by the previous key", signer: "west", wantErr: ErrKeyConflict, wantKeys: []string{"west2"}, wantChanged: true},
				{name: "link proved by the previous key", signer: "west", link: true, wantErr: ErrKeyConflict, wantKeys: []string{"west2"}},
				{name: "an old endorsed record brings no key back", signer: "west2", endorser: "west", wantKeys: []string{"west2"}},
			},
		},
		{
			name: "held by a link first",
			steps: []rolloverStep{
				{name: "link", signer: "west", link: true, wantKeys: []string{"west"}},
				{name: "record by the new key, endorsed", signer: "west2", endorser: "west", wantKeys: []string{"west2", "west"}, wantChanged: true},
			},
		},
		{
			name: "first seen while it rotates",
			steps: []rolloverStep{
				{name: "record by the new key, endorsed", signer: "west2", endorser: "west", wantKeys: []string{"west2", "west"}, wantChanged: true},
				{name: "gateway not reloaded yet", signer: "west", wantKeys: []string{"west2", "west"}},
			},
		},
		{
			name: "forged rollovers",
			steps: []rolloverStep{
				{name: "first record", signer: "west", wantKeys: []string{"west"}, wantChanged: true},
				{name: "endorsed by a key that holds nothing", signer: "mallory", endorser: "mallory2", wantErr: ErrKeyConflict, wantKeys: []string{"west"}, wantChanged: true},
				{name: "again", signer: "mallory", endorser: "mallory2", wantErr: ErrKeyConflict, wantKeys: []string{"west"}},
				{name: "endorsing key is not the holder", signer: "mallory", endorser: "west2", wantErr: ErrKeyConflict, wantKeys: []string{"west"}},
				{name: "link of an endorsed key", signer: "west2", link: true, wantErr: ErrKeyConflict, wantKeys: []string{"west"}, wantChanged: true},
				{name: "real rollover", signer: "west2", endorser: "west", wantKeys: []string{"west2", "west"}, wantChanged: true},
				{name: "the previous key endorses another", signer: "west3", endorser: "west", wantErr: ErrKeyConflict, wantKeys: []string{"west2", "west"}, wantChanged: true},
			},
		},
		{
			name: "second rotation",
			steps: []rolloverStep{
				{name: "first record", signer: "west", wantKeys: []string{"west"}, wantChanged: true},
				{name: "to west2", signer: "west2", endorser: "west", wantKeys: []string{"west2", "west"}, wantChanged: true},
				{name: "to west3 before west2's finished", signer: "west3", endorser: "west2", wantKeys: []string{"west3", "west2"}, wantChanged: true},
				{name: "west no longer speaks", signer: "west", wantErr: ErrKeyConflict, wantKeys: []string{"west3", "west2"}, wantChanged: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runRollover(t, newDB("east", 10), "west", tt.steps)
		})
	}
}

func TestSuperseded(t *testing.T) {
	db := newDB("east", 10)
	if _, err := db.Apply(rolled(t, rec("west", 5, 1, nil, nil), "west", "")); err != nil {
		t.Fatal(err)
	}
	check := func(when, key, wantKey string, wantOK bool) {
		t.Helper()
		got, ok := db.Superseded("west", testKeyID(key))
		if ok != wantOK || (wantKey != "" && got != testKeyID(wantKey)) || (wantKey == "" && got != "") {
			t.Errorf("%s: Superseded(west, %s) = %s, %v; want %s, %v", when, key, Fingerprint(got), ok, wantKey, wantOK)
		}
	}
	check("before", "west", "", false)
	if _, err := db.Apply(rolled(t, rec("west", 5, 2, nil, nil), "west2", "west")); err != nil {
		t.Fatal(err)
	}
	check("while rotating", "west", "west2", true)
	check("while rotating", "west2", "", false)
	check("while rotating", "mallory", "", false)
	if got := db.HolderOf("west"); got != testKeyID("west2") {
		t.Errorf("HolderOf(west) = %s, want west2's key", Fingerprint(got))
	}
	if _, err := db.Apply(rolled(t, rec("west", 5, 3, nil, nil), "west2", "")); err != nil {
		t.Fatal(err)
	}
	check("after", "west", "", false)
	if got, ok := db.Superseded("nowhere", testKeyID("west")); ok || got != "" {
		t.Errorf("Superseded(nowhere) = %s, %v", got, ok)
	}
	if got := db.KeysOf("nowhere"); got != nil {
		t.Errorf("KeysOf(nowhere) = %v, want nil", got)
	}
}

// The gateways of the local site east (e1: this DB, e2, e3) reload the
// rotated CA one after the other.
func TestLocalRollover(t *testing.T) {
	db := newDB("east", 10, WithRouter("e1"))
	runRollover(t, db, "east", []rolloverStep{
		{name: "sibling", router: "e2", signer: "east", wantKeys: []string{"east"}, wantChanged: true},
		// HolderOf, and so KeysOf first, is the key this DB signs with.
		{name: "sibling rotated first", router: "e2", signer: "east2", endorser: "east", wantKeys: []string{"east", "east2"}, wantChanged: true},
		{name: "sibling not reloaded", router: "e3", signer: "east", wantKeys: []string{"east", "east2"}, wantChanged: true},
		{name: "link to the rotated sibling", signer: "east2", link: true, wantKeys: []string{"east", "east2"}},
		{name: "forged", router: "e4", signer: "mallory", endorser: "mallory2", wantErr: ErrKeyConflict, wantKeys: []string{"east", "east2"}, wantChanged: true},
	})
	if got, ok := db.Superseded("east", testKeyID("east")); !ok || got != testKeyID("east2") {
		t.Errorf("Superseded(east, east) = %s, %v", Fingerprint(got), ok)
	}

	// This gateway reloads the rotated CA: it signs with east2, endorsed.
	changed := db.Changed()
	before := db.Local()
	if err := db.SetKey(testKey("east2"), testKey("east")); err != nil {
		t.Fatalf("SetKey() error = %v", err)
	}
	if !fired(changed) {
		t.Error("SetKey() did not fire Changed")
	}
	s, err := db.LocalSigned()
	if err != nil {
		t.Fatalf("LocalSigned() error = %v", err)
	}
	opened, err := Open(s.Wire(), now0)
	if err != nil {
		t.Fatalf("Open(LocalSigned()) error = %v", err)
	}
	if opened.Key != testKeyID("east2") || opened.Prev == nil || opened.Prev.Key != testKeyID("east") || opened.Seq != before.Seq+1 {
		t.Errorf("local record after SetKey: key %s, prev %+v, seq %d (was %d)", Fingerprint(opened.Key), opened.Prev, opened.Seq, before.Seq)
	}
	if got := db.HolderOf("east"); got != testKeyID("east2") {
		t.Errorf("HolderOf(east) = %s, want east2's key", Fingerprint(got))
	}
	// Our own record, flooded back, is no conflict.
	if ok, err := db.Apply(opened); ok || err != nil {
		t.Errorf("Apply(own record) = %v, %v; want false, nil", ok, err)
	}
	runRollover(t, db, "east", []rolloverStep{
		{name: "sibling not reloaded", router: "e3", signer: "east", wantKeys: []string{"east2", "east"}},
		// A sibling finished before us: we still hold our previous key.
		{name: "sibling finished", router: "e2", signer: "east2", wantKeys: []string{"east2", "east"}},
		{name: "sibling not reloaded, still", router: "e3", signer: "east", wantKeys: []string{"east2", "east"}},
		{name: "link by the previous key", signer: "east", link: true, wantKeys: []string{"east2", "east"}},
	})

	// The rotation finishes here too: east no longer speaks for east.
	if err := db.SetKey(testKey("east2"), nil); err != nil {
		t.Fatalf("SetKey() error = %v", err)
	}
	if l := db.Local(); l.Prev != nil || l.Key != testKeyID("east2") {
		t.Errorf("local record after the rotation: key %s, prev %+v", Fingerprint(l.Key), l.Prev)
	}
	runRollover(t, db, "east", []rolloverStep{
		{name: "sibling finished", router: "e2", signer: "east2", wantKeys: []string{"east2"}},
		{name: "previous key", router: "e3", signer: "east", wantErr: ErrKeyConflict, wantKeys: []string{"east2"}, wantChanged: true},
		{name: "link by the previous key", signer: "east", link: true, wantErr: ErrKeyConflict, wantKeys: []string{"east2"}},
	})
}

func TestWithPrevKey(t *testing.T) {
	db := NewDB("east", 10, WithRouter("e1"), WithPrevKey(testKey("east")), WithKey(testKey("east2")))
	// The records it returns are copies, their Prev included.
	db.Local().Prev.Sig[0] ^= 1
	db.Records()[0].Prev.Key = "x"
	s, err := db.LocalSigned()
	if err != nil {
		t.Fatalf("LocalSigned() error = %v", err)
	}
	opened, err := Open(s.Wire(), now0)
	if err != nil {
		t.Fatalf("Open(LocalSigned()) error = %v", err)
	}
	if opened.Prev == nil || opened.Prev.Key != testKeyID("east") {
		t.Errorf("local record's Prev = %+v, want east's endorsement", opened.Prev)
	}
	if diff := cmp.Diff(db.KeysOf("east"), keyIDs("east2", "east")); diff != "" {
		t.Errorf("KeysOf(east) (-got +want):\n%s", diff)
	}
	for _, signer := range []string{"east", "east2"} {
		if _, err := db.Apply(rolled(t, routerRec("east", "e2-"+signer, 1, nil, nil), signer, "")); err != nil {
			t.Errorf("record of a sibling by %s: %v", signer, err)
		}
	}
	// A previous key that is the key itself is none.
	same := NewDB("east", 10, WithKey(testKey("east")), WithPrevKey(testKey("east")))
	if l := same.Local(); l.Prev != nil {
		t.Errorf("Prev = %+v with the key as its own previous key", l.Prev)
	}
	if _, err := same.LocalSigned(); err != nil {
		t.Errorf("LocalSigned() error = %v", err)
	}
	// Without a key to sign with, it does nothing.
	if got := NewDB("east", 10, WithPrevKey(testKey("east"))).KeysOf("east"); got != nil {
		t.Errorf("KeysOf(east) = %v of a DB with no key", got)
	}
}

func TestSetKeyRefuses(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		key, prev *ecdsa.PrivateKey
	}{
		{"no key", nil, testKey("east")},
		{"key not P-256", p384, nil},
		{"previous key not P-256", testKey("east2"), p384},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newDB("east", 10)
			before := db.Local()
			if err := db.SetKey(tt.key, tt.prev); err == nil {
				t.Fatal("SetKey() succeeded, want an error")
			}
			if diff := cmp.Diff(db.Local(), before); diff != "" {
				t.Errorf("local record changed by a refused SetKey (-got +want):\n%s", diff)
			}
		})
	}
}

// A sidecar's DB signs nothing; during a rotation its credentials name
// both of its site's keys.
func TestSidecarSiteKeys(t *testing.T) {
	tests := []struct {
		name     string
		ids      []string
		accepted []string // test keys whose records of the site are held
		wantKeys []string
	}{
		{"rotating", keyIDs("east2", "east"), []string{"east2", "east"}, []string{"east2", "east"}},
		{"one key", keyIDs("east"), []string{"east"}, []string{"east"}},
		{"the same key twice", keyIDs("east", "east"), []string{"east"}, []string{"east"}},
		{"no key", nil, nil, nil},
		{"empty key", []string{""}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := NewDB("east", 10, WithRouter("e1"), WithSiteKeyID(tt.ids...))
			if diff := cmp.Diff(db.KeysOf("east"), keyIDs(tt.wantKeys...)); diff != "" {
				t.Errorf("KeysOf(east) (-got +want):\n%s", diff)
			}
			for _, signer := range []string{"east", "east2", "mallory"} {
				_, err := db.Apply(rolled(t, routerRec("east", "e2-"+signer, 1, nil, nil), signer, ""))
				if want := slices.Contains(tt.accepted, signer); (err == nil) != want {
					t.Errorf("record by %s: error = %v, want accepted %v", signer, err, want)
				}
				if err := db.Bind("east", testKeyID(signer)); (err == nil) != slices.Contains(tt.accepted, signer) {
					t.Errorf("link by %s: error = %v", signer, err)
				}
			}
		})
	}
	// A sibling's rollover moves the sidecar's HolderOf; the key it was
	// given still speaks for the site, even once the rotation finished.
	db := NewDB("east", 10, WithRouter("e1"), WithSiteKeyID(testKeyID("east")))
	runRollover(t, db, "east", []rolloverStep{
		{name: "rotated", router: "e2", signer: "east2", endorser: "east", wantKeys: []string{"east2", "east"}, wantChanged: true},
		{name: "finished", router: "e2", signer: "east2", wantKeys: []string{"east2", "east"}},
		{name: "not reloaded", router: "e3", signer: "east", wantKeys: []string{"east2", "east"}, wantChanged: true},
	})
	if got := db.HolderOf("east"); got != testKeyID("east2") {
		t.Errorf("HolderOf(east) = %s, want east2's key", Fingerprint(got))
	}
}

// TestSetKeyConcurrent is for the race detector.
func TestSetKeyConcurrent(t *testing.T) {
	db := newDB("east", 10, WithRouter("e1"))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 50 {
			prev := testKey("east")
			if i%2 == 1 {
				prev = nil
			}
			if err := db.SetKey(testKey("east2"), prev); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		for range 50 {
			if _, err := db.LocalSigned(); err != nil {
				t.Error(err)
			}
			_ = db.HolderOf("east")
			_ = db.KeysOf("east")
			_, _ = db.Superseded("east", testKeyID("east"))
			_ = db.Bind("east", testKeyID("east2"))
			_ = db.View()
		}
	})
	wg.Wait()
}
