package certs

import (
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testSpec() Spec {
	return Spec{
		DNSNames:     ServiceDNSNames("skiff-injector", "site-a"),
		IPs:          []net.IP{net.ParseIP("127.0.0.1")},
		CALifetime:   30 * time.Hour,
		LeafLifetime: 9 * time.Hour,
		PublishDelay: time.Hour,
	}
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Spec)
		wantErr string
	}{
		{"ok", func(*Spec) {}, ""},
		{"no names", func(s *Spec) { s.DNSNames = nil }, "no DNS names"},
		{"zero lifetime", func(s *Spec) { s.LeafLifetime = 0 }, "lifetimes must be positive (CA 30h0m0s, leaf 0s)"},
		{"leaf outlives CA", func(s *Spec) { s.LeafLifetime = 31 * time.Hour }, "leaf lifetime 31h0m0s exceeds CA lifetime 30h0m0s"},
		{"publish too slow", func(s *Spec) { s.PublishDelay = 10 * time.Hour }, "publish delay 10h0m0s must be under a third of the CA lifetime 30h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec()
			tc.mod(&s)
			got := ""
			if err := s.Validate(); err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(got, tc.wantErr); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestPlanCreatesAndRenewsAtTwoThirds(t *testing.T) {
	spec := testSpec()
	b, changes, err := Plan(nil, spec, t0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(changes, []string{ChangeCreated}); diff != "" {
		t.Fatalf("changes (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(b.Leaf.DNSNames, spec.DNSNames); diff != "" {
		t.Errorf("DNS names (-got +want):\n%s", diff)
	}
	if len(b.Leaf.IPAddresses) != 1 || !b.Leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IP SANs %v", b.Leaf.IPAddresses)
	}

	// Just before two thirds of the leaf's 9h: nothing to do.
	if _, changes, _ := Plan(b, spec, t0.Add(6*time.Hour-time.Second), t0); changes != nil {
		t.Errorf("before 2/3: changes %v", changes)
	}
	b2, changes, err := Plan(b, spec, t0.Add(6*time.Hour), t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(changes, []string{ChangeLeafRenewed}); diff != "" {
		t.Errorf("at 2/3 (-got +want):\n%s", diff)
	}
	if !b2.CAs[0].Equal(b.CAs[0]) || b2.Leaf.Equal(b.Leaf) {
		t.Errorf("leaf renewal should keep the CA and change the leaf")
	}

	// New names: renewed at once.
	spec.DNSNames = ServiceDNSNames("injector", "site-a")
	if _, changes, _ := Plan(b, spec, t0.Add(time.Minute), t0); !slices.Equal(changes, []string{ChangeLeafRenewed}) {
		t.Errorf("new names: changes %v", changes)
	}
	// A CA key that does not match: start over.
	broken := *b
	broken.CAKey = b.LeafKey
	if _, changes, _ := Plan(&broken, spec, t0.Add(time.Minute), t0); !slices.Equal(changes, []string{ChangeCreated}) {
		t.Errorf("mismatched CA key: changes %v", changes)
	}
}

// Simulate 200 hours of checks every 10 minutes, as the manager does
// (trustedSince = the first check that saw the signing CA), and check the
// invariants that make rotation outage-free.
func TestPlanRotationInvariants(t *testing.T) {
	spec := testSpec()
	var b *Bundle
	var trustedCA *x509.Certificate
	var trustedSince time.Time
	count := map[string]int{}
	for now := t0; now.Before(t0.Add(200 * time.Hour)); now = now.Add(10 * time.Minute) {
		prevLeaf := (*x509.Certificate)(nil)
		if b != nil {
			prevLeaf = b.Leaf
		}
		next, changes, err := Plan(b, spec, now, trustedSince)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range changes {
			count[c]++
		}
		b = next
		if trustedCA == nil || !trustedCA.Equal(b.CAs[0]) {
			trustedCA, trustedSince = b.CAs[0], now // published at once
		}

		if now.Before(b.Leaf.NotBefore) || !now.Before(b.Leaf.NotAfter) {
			t.Fatalf("%s: leaf not valid (%s..%s)", now, b.Leaf.NotBefore, b.Leaf.NotAfter)
		}
		if !chainsTo(b.Leaf, b.CAs) {
			t.Fatalf("%s: leaf does not chain to a trusted CA", now)
		}
		if len(b.CAs) > 2 {
			t.Fatalf("%s: %d trusted CAs", now, len(b.CAs))
		}
		for _, ca := range b.CAs {
			if !now.Before(ca.NotAfter) {
				t.Fatalf("%s: expired CA still trusted", now)
			}
		}
		// A leaf from a newly trusted CA only after the publish delay.
		if prevLeaf != nil && !b.Leaf.Equal(prevLeaf) && !slices.Equal(changes, []string{ChangeCreated}) &&
			!slices.Equal(b.Leaf.RawIssuer, prevLeaf.RawIssuer) && now.Sub(trustedSince) < spec.PublishDelay {
			t.Fatalf("%s: leaf of a CA trusted only %s ago", now, now.Sub(trustedSince))
		}
		// The previous leaf stays trusted: replicas that still serve it keep working.
		if prevLeaf != nil && now.Before(prevLeaf.NotAfter) && !chainsTo(prevLeaf, b.CAs) {
			t.Fatalf("%s: the previous leaf lost its CA before expiring", now)
		}
	}
	// CA renewed every 20h, leaf every 6h (and after each CA rotation).
	if count[ChangeCreated] != 1 || count[ChangeCARotated] < 9 || count[ChangeLeafRenewed] < 33 {
		t.Errorf("changes over 200h: %v", count)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	b, _, err := Plan(nil, testSpec(), t0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err = Plan(b, testSpec(), t0.Add(20*time.Hour), t0) // two CAs
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.Data()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	data2, err := got.Data()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(data2, data); diff != "" {
		t.Errorf("round trip (-got +want):\n%s", diff)
	}
	if len(got.CAs) != 2 {
		t.Errorf("%d CAs, want 2", len(got.CAs))
	}
	delete(data, KeyCAKey)
	if _, err := ParseBundle(data); !errors.Is(err, ErrIncomplete) {
		t.Errorf("missing ca.key: %v, want ErrIncomplete", err)
	}
}
