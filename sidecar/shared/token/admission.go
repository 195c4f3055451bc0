package token

import (
	"sync"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
)

// Admission admits link peers over a site's ledger and CA: it is what a
// gateway's router asks (router.Admission) whether a token may be
// redeemed, a link certificate is still good, or a sidecar may attach.
type Admission struct {
	Ledger *Ledger
	CA     *pki.CA
	// Authority, when set, is the site CA of a running gateway, which a
	// rotation replaces; it takes precedence over CA.
	Authority *pki.Authority
	Site      string
	// LinkValidity is how long the link certificates it issues last; 0:
	// CertValidity (a year). Shortened in tests, so that renewal runs.
	LinkValidity time.Duration

	mu      sync.Mutex
	members map[string]time.Time // member token id -> admitted until
}

// memberTTL is how long a member token, once admitted, is admitted again
// without reading the ledger: a gateway restart reconnects every sidecar
// of the site at once, and the ledger may be a Secret in the API server.
const memberTTL = time.Minute

// Redeem records the redemption in the ledger and issues a link
// certificate for the redeeming site's key, valid as long as a token's
// certificate.
func (a *Admission) Redeem(id, site, key string, now time.Time) ([]byte, error) {
	pub, err := netview.ParseKeyID(key)
	if err != nil {
		return nil, err
	}
	if err := a.Ledger.Redeem(id, site, key, now); err != nil {
		return nil, err
	}
	return a.ca().IssueLink(site, pub, id, a.linkValidity())
}

// ca is the CA that issues link certificates now.
func (a *Admission) ca() *pki.CA {
	if a.Authority != nil {
		return a.Authority.CA()
	}
	return a.CA
}

// RenewLink issues a new link certificate for site and key, with token
// id, to a site whose link certificate is still admitted (CheckLink).
func (a *Admission) RenewLink(id, site, key string) ([]byte, error) {
	pub, err := netview.ParseKeyID(key)
	if err != nil {
		return nil, err
	}
	if err := a.Ledger.Check(id, site, key); err != nil {
		return nil, err
	}
	return a.ca().IssueLink(site, pub, id, a.linkValidity())
}

// RekeyLink moves site from key old to key new in the ledger (site
// rotated its key and endorsed new with old; the caller checked that) and
// issues a link certificate for new with token id.
func (a *Admission) RekeyLink(id, site, old, new string) ([]byte, error) {
	pub, err := netview.ParseKeyID(new)
	if err != nil {
		return nil, err
	}
	if err := a.Ledger.Rekey(site, old, new); err != nil {
		return nil, err
	}
	if err := a.Ledger.Check(id, site, new); err != nil {
		return nil, err
	}
	return a.ca().IssueLink(site, pub, id, a.linkValidity())
}

func (a *Admission) linkValidity() time.Duration {
	if a.LinkValidity > 0 {
		return a.LinkValidity
	}
	return CertValidity
}

// CheckLink admits a link certificate while its token is in the ledger
// and was not redeemed under site's name by another key.
func (a *Admission) CheckLink(id, site, key string) error {
	return a.Ledger.Check(id, site, key)
}

// AdmitMember admits a sidecar of this site with the member token id.
func (a *Admission) AdmitMember(id string, now time.Time) error {
	a.mu.Lock()
	until, ok := a.members[id]
	a.mu.Unlock()
	if ok && now.Before(until) {
		return nil
	}
	if err := a.Ledger.Redeem(id, a.Site, "", now); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.members == nil {
		a.members = map[string]time.Time{}
	}
	for k, u := range a.members { // members are few: sweep as we go
		if !now.Before(u) {
			delete(a.members, k)
		}
	}
	a.members[id] = now.Add(memberTTL)
	return nil
}

// Policy returns the policy of the links made with token id.
func (a *Admission) Policy(id string) (policy.Policy, error) {
	return a.Ledger.Policy(id)
}
