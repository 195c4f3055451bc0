package token

import (
	"errors"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/policy"
)

// A member token once admitted is admitted again without reading the
// ledger for memberTTL (a gateway restart reconnects every sidecar at
// once); after that the ledger decides again, so a removed entry
// refuses the token within memberTTL.
func TestAdmitMemberCached(t *testing.T) {
	ca := newCA(t, "east")
	tok, err := IssueMember(ca, "east", "127.0.0.1:1", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &Admission{Ledger: l, CA: ca, Site: "east"}
	if err := a.AdmitMember(tok.ID, now); !errors.Is(err, ErrUnknown) {
		t.Fatalf("before the entry: %v, want ErrUnknown", err)
	}
	if err := l.Record(tok, policy.Policy{}); err != nil {
		t.Fatal(err)
	}
	if err := a.AdmitMember(tok.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.AdmitMember(tok.ID, now.Add(memberTTL-time.Second)); err != nil {
		t.Errorf("within memberTTL: %v, want admitted from the cache", err)
	}
	if err := a.AdmitMember(tok.ID, now.Add(memberTTL)); !errors.Is(err, ErrUnknown) {
		t.Errorf("after memberTTL with the entry removed: %v, want ErrUnknown", err)
	}
}
