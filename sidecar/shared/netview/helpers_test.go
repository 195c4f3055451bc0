package netview

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testKeys holds one key per site name, made on first use.
var testKeys sync.Map // site -> *ecdsa.PrivateKey

func testKey(site string) *ecdsa.PrivateKey {
	if k, ok := testKeys.Load(site); ok {
		return k.(*ecdsa.PrivateKey)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	actual, _ := testKeys.LoadOrStore(site, k)
	return actual.(*ecdsa.PrivateKey)
}

func testKeyID(site string) string {
	id, err := KeyID(&testKey(site).PublicKey)
	if err != nil {
		panic(err)
	}
	return id
}

// newDB returns a DB for self that signs with self's test key.
func newDB(self string, epoch int64, opts ...Option) *DB {
	return NewDB(self, epoch, append([]Option{WithKey(testKey(self))}, opts...)...)
}

// apply signs r with its site's test key and applies it; a record that
// cannot be signed or is refused counts as not applied.
func apply(db *DB, r Record) bool {
	s, err := Sign(r, testKey(r.Site))
	if err != nil {
		return false
	}
	ok, _ := db.Apply(s)
	return ok
}

// checkValidation checks r, a record of west: valid (wantMsg "") it
// encodes and decodes to itself; else validate and Encode refuse it with
// ErrInvalidRecord, saying west and wantMsg.
func checkValidation(t *testing.T, r Record, wantMsg string) {
	t.Helper()
	err := validate(r)
	if wantMsg == "" {
		if err != nil {
			t.Fatalf("validate() error = %v, want none", err)
		}
		b, err := Encode(r)
		if err != nil {
			t.Fatalf("Encode() error = %v", err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%s) error = %v", b, err)
		}
		if diff := cmp.Diff(got, r); diff != "" {
			t.Errorf("round trip of %s (-got +want):\n%s", b, diff)
		}
		return
	}
	if !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("validate() error = %v, want %v", err, ErrInvalidRecord)
	}
	if !strings.Contains(err.Error(), wantMsg) || !strings.HasPrefix(err.Error(), `site record from "west": `) {
		t.Errorf("validate() error = %q, want one from west containing %q", err, wantMsg)
	}
	if _, err := Encode(r); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("Encode() error = %v, want %v", err, ErrInvalidRecord)
	}
}

// signedWire is r signed with west's key, as it goes on the wire.
func signedWire(t *testing.T, r Record) []byte {
	t.Helper()
	s, err := Sign(r, testKey("west"))
	if err != nil {
		t.Fatalf("Sign() error = %v", err)
	}
	return s.Wire()
}

// editSigned replaces old by new in a signed record's body, keeping the
// signature.
func editSigned(t *testing.T, wire []byte, old, new string) []byte {
	t.Helper()
	var env envelope
	if err := json.Unmarshal(wire, &env); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(env.Record, []byte(old)) {
		t.Fatalf("record %s has no %s", env.Record, old)
	}
	env.Record = bytes.Replace(env.Record, []byte(old), []byte(new), 1)
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
