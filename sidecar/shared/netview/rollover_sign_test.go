package netview

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// endorsed returns the endorsement by the test key of endorser of the
// test key of signer, for site.
func endorsed(t *testing.T, site, signer, endorser string) *Rollover {
	t.Helper()
	e, err := Endorse(site, testKeyID(signer), testKey(endorser))
	if err != nil {
		t.Fatalf("Endorse() error = %v", err)
	}
	return e
}

func TestEndorseVerify(t *testing.T) {
	good := endorsed(t, "west", "west2", "west")
	if good.Key != testKeyID("west") {
		t.Fatalf("Endorse() key = %s, want west's", Fingerprint(good.Key))
	}
	flipped := *good
	flipped.Sig = bytes.Clone(good.Sig)
	flipped.Sig[len(flipped.Sig)-1] ^= 1
	otherSigner := *good
	otherSigner.Key = testKeyID("mallory") // west's signature, mallory's key
	tests := []struct {
		name     string
		e        *Rollover
		site     string
		newKeyID string
		wantErr  error
	}{
		{"good", good, "west", testKeyID("west2"), nil},
		{"another site", good, "east", testKeyID("west2"), ErrSignature},
		{"another new key", good, "west", testKeyID("mallory"), ErrSignature},
		{"another signer", &otherSigner, "west", testKeyID("west2"), ErrSignature},
		{"signature changed", &flipped, "west", testKeyID("west2"), ErrSignature},
		{"no signature", &Rollover{Key: good.Key}, "west", testKeyID("west2"), ErrSignature},
		{"no key", &Rollover{Sig: good.Sig}, "west", testKeyID("west2"), ErrSignature},
		{"key not base64", &Rollover{Key: "!", Sig: good.Sig}, "west", testKeyID("west2"), ErrSignature},
		{"key endorses itself", &Rollover{Key: testKeyID("west2"), Sig: good.Sig}, "west", testKeyID("west2"), ErrSignature},
		{"no endorsement", nil, "west", testKeyID("west2"), ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.e.Verify(tt.site, tt.newKeyID); !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestEndorseRefuses(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		newKeyID string
		prev     *ecdsa.PrivateKey
	}{
		{"no previous key", testKeyID("west2"), nil},
		{"previous key not P-256", testKeyID("west2"), p384},
		{"no new key", "", testKey("west")},
		{"new key is the previous key", testKeyID("west"), testKey("west")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e, err := Endorse("west", tt.newKeyID, tt.prev); err == nil {
				t.Errorf("Endorse() = %+v, want an error", e)
			}
		})
	}
}

func TestOpenEndorsed(t *testing.T) {
	r := rec("west", now0.UnixNano(), 3, map[string]int{"east": 2}, nil)
	r.Prev = endorsed(t, "west", "west2", "west")
	got, err := Open(signedBy(t, r, "west2").Wire(), now0)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	want := r
	want.Key = testKeyID("west2")
	if diff := cmp.Diff(got.Record, want); diff != "" {
		t.Errorf("Open() (-got +want):\n%s", diff)
	}
}

func TestOpenRefusesBadEndorsement(t *testing.T) {
	tests := []struct {
		name string
		prev *Rollover
	}{
		{"endorsed for another site", endorsed(t, "east", "west2", "west")},
		{"endorsement of another key", endorsed(t, "west", "mallory", "west")},
		{"endorsement claimed for another key", func() *Rollover {
			e := endorsed(t, "west", "west2", "mallory")
			e.Key = testKeyID("west") // mallory's signature, west's key
			return e
		}()},
		{"no signature", &Rollover{Key: testKeyID("west")}},
		{"previous key not a key", &Rollover{Key: "AAAA", Sig: []byte{1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rec("west", now0.UnixNano(), 3, nil, nil)
			r.Prev = tt.prev
			_, err := Open(signedBy(t, r, "west2").Wire(), now0)
			if !errors.Is(err, ErrSignature) {
				t.Errorf("Open() error = %v, want ErrSignature", err)
			}
			if err != nil && len(err.Error()) > 400 {
				t.Errorf("Open() error of %d bytes: a peer can make log lines long", len(err.Error()))
			}
		})
	}
}
