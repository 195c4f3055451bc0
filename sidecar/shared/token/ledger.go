package token

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/state"
)

// LedgerDir is the ledger's directory inside a site's data dir (the
// store's [state.Tokens] bucket).
const LedgerDir = state.Tokens

// Ledger is the issuing site's record of the tokens it issued and of the
// sites that redeemed them: one entry per token, <id>.yaml in a store's
// [state.Tokens] bucket. A Linux site's ledger is dataDir/tokens/ (files
// 0600); a Kubernetes site's is its state Secret, where the controller
// writes the entries of the tokens it issues and every gateway replica
// records redemptions. Nothing is cached, so a running gateway sees
// tokens recorded later, by `skiff-router token issue` or the controller,
// and a deleted entry revokes its token at once.
//
// Every change is one atomic update of one entry ([state.Store.Update]),
// so replicas sharing a store never redeem a token more often than it
// allows.
type Ledger struct {
	store state.Store
}

// NewLedger returns the ledger in store.
func NewLedger(store state.Store) *Ledger { return &Ledger{store: store} }

// OpenLedger opens the ledger in dataDir, creating its directory, or
// tightening it, to 0700 ([pki.SecureDir]).
func OpenLedger(dataDir string) (*Ledger, error) {
	if _, err := pki.SecureDir(filepath.Join(dataDir, LedgerDir)); err != nil {
		return nil, fmt.Errorf("open token ledger: %w", err)
	}
	return NewLedger(state.NewDir(dataDir)), nil
}

// LedgerEntry returns the ledger entry of an issued token with the
// policy of the links made with it (the zero Policy allows all), keeping
// the redemptions of cur, the entry as it is (nil: none). The Kubernetes
// controller writes what it returns into the state Secret.
func LedgerEntry(t *Token, p policy.Policy, cur []byte) ([]byte, error) {
	if !hexID.MatchString(t.ID) || t.Redemptions < 1 {
		return nil, fmt.Errorf("ledger entry of token %q: bad id or redemptions %d", t.ID, t.Redemptions)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("ledger entry of token %s: policy: %w", t.ID, err)
	}
	e := entry{ID: t.ID, Site: t.Site, Endpoint: t.Endpoint, Expires: t.Expires.UTC(), Redemptions: t.Redemptions, Member: t.IsMember(), Allow: p, RedeemedBy: []redemption{}}
	var old entry
	if cur != nil && yaml.Unmarshal(cur, &old) == nil && old.ID == t.ID && old.RedeemedBy != nil {
		e.RedeemedBy = old.RedeemedBy
	}
	data, err := yaml.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("ledger entry of token %s: %w", t.ID, err)
	}
	return data, nil
}

// EntryInfo is what the Kubernetes controller reads of an entry to
// decide whether it stays: the token's id, whether it is a member
// token's, and its expiry.
type EntryInfo struct {
	ID      string
	Member  bool
	Expires time.Time
}

// ParseEntryInfo reads an entry's EntryInfo.
func ParseEntryInfo(data []byte) (EntryInfo, error) {
	var e entry
	if err := yaml.Unmarshal(data, &e); err != nil {
		return EntryInfo{}, fmt.Errorf("ledger entry: %w", err)
	}
	if !hexID.MatchString(e.ID) {
		return EntryInfo{}, fmt.Errorf("ledger entry: id %q is not lowercase hex", clip(e.ID))
	}
	return EntryInfo{ID: e.ID, Member: e.Member, Expires: e.Expires}, nil
}

// EntryName is the name of token id's entry in the [state.Tokens] bucket.
func EntryName(id string) string { return id + ".yaml" }

// entry is a token's file in the ledger.
type entry struct {
	ID          string    `yaml:"id"`
	Site        string    `yaml:"site"`
	Endpoint    string    `yaml:"endpoint"`
	Expires     time.Time `yaml:"expires"`
	Redemptions int       `yaml:"redemptions"`
	// Member marks a member token's entry (the site's own sidecars).
	Member bool `yaml:"member,omitempty"`
	// Allow is the policy of the links made with the token; entries
	// written before policies were have none: everything is allowed.
	Allow      policy.Policy `yaml:"allow,omitempty"`
	RedeemedBy []redemption  `yaml:"redeemedBy"`
}

type redemption struct {
	Site string `yaml:"site"`
	// Key is the redeeming site's public key (base64 PKIX, as in its
	// site records): the site name stays with it.
	Key string `yaml:"key,omitempty"`
	// Prev is the site's key before it rotated to Key (a rollover the
	// site endorsed with Prev, see [Ledger.Rekey]): the link
	// certificates issued for it are still honoured while the site
	// moves its gateways to Key.
	Prev string    `yaml:"prev,omitempty"`
	At   time.Time `yaml:"at"`
}

// holds reports whether the redemption ties its site to key.
func (r redemption) holds(key string) bool {
	return r.Key == key || (r.Prev != "" && r.Prev == key)
}

// where names token id's entry in messages.
func (l *Ledger) where(id string) string {
	if d, ok := l.store.(*state.Dir); ok {
		return d.Path(state.Tokens, EntryName(id))
	}
	return l.store.String() + " " + state.DataKey(state.Tokens, EntryName(id))
}

// Record adds an issued token to the ledger, with the policy of the links
// made with it (the zero Policy allows all). Recording an id twice is an
// error.
func (l *Ledger) Record(t *Token, p policy.Policy) error {
	if !hexID.MatchString(t.ID) {
		return fmt.Errorf("record token: id %q is not lowercase hex", t.ID)
	}
	if t.Redemptions < 1 {
		return fmt.Errorf("record token %s: redemptions must be >= 1, got %d", t.ID, t.Redemptions)
	}
	data, err := LedgerEntry(t, p, nil)
	if err != nil {
		return fmt.Errorf("record token %s: %w", t.ID, err)
	}
	err = l.store.Update(state.Tokens, EntryName(t.ID), func(cur []byte) ([]byte, error) {
		if cur != nil {
			return nil, fmt.Errorf("%s: %w", l.where(t.ID), fs.ErrExist)
		}
		return data, nil
	})
	if err != nil {
		return fmt.Errorf("record token %s: %w", t.ID, err)
	}
	return nil
}

// Remove deletes the entry of token id, for a token that was recorded but
// never handed out (writing it failed). A removed token is unknown to the
// ledger from then on, as if never issued.
func (l *Ledger) Remove(id string) error {
	if !hexID.MatchString(id) {
		return fmt.Errorf("remove token: id %q is not lowercase hex", id)
	}
	err := l.store.Update(state.Tokens, EntryName(id), func(cur []byte) ([]byte, error) {
		if cur == nil {
			return nil, fmt.Errorf("%s: %w", l.where(id), fs.ErrNotExist)
		}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("remove token %s: %w", id, err)
	}
	return nil
}

// Redeem admits a link client whose certificate is token id's, from site
// bySite holding key (the site's public key, as link hellos carry it), at
// now. A site that redeemed the token before with the same key may always
// reconnect, and redeem again (a gateway that lost its link certificate
// gets a new one). Otherwise the token must not have expired
// ([ErrExpired]), fewer than Redemptions other sites may have redeemed it
// ([ErrUsed]), and no token of this ledger may have been redeemed under
// the name bySite with another key ([ErrNameTaken]); then bySite and key
// are recorded. An id the ledger does not hold is [ErrUnknown].
// Redemptions recorded before keys were (without one) take the key of the
// next one.
func (l *Ledger) Redeem(id, bySite, key string, now time.Time) error {
	if !hexID.MatchString(id) {
		return fmt.Errorf("token %q: not issued by this site: %w", clip(id), ErrUnknown)
	}
	if bySite == "" {
		return fmt.Errorf("token %s: redeeming site has no name", id)
	}
	holder, tok, err := l.holderOf(bySite)
	if err != nil {
		return err
	}
	if holder.Key != "" && !holder.holds(key) {
		return fmt.Errorf("token %s: site name %q was taken with token %s by another key; a site keeps its name with the key it first linked with: %w", id, bySite, tok, ErrNameTaken)
	}
	return l.store.Update(state.Tokens, EntryName(id), func(cur []byte) ([]byte, error) {
		e, err := l.parse(id, cur)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(e.RedeemedBy, func(r redemption) bool { return r.Site == bySite })
		switch {
		case i >= 0 && e.RedeemedBy[i].holds(key):
			return cur, nil
		case i >= 0 && e.RedeemedBy[i].Key != "":
			return nil, fmt.Errorf("token %s: site %q redeemed it with another key: %w", id, bySite, ErrNameTaken)
		case i >= 0:
			e.RedeemedBy[i].Key = key // recorded before keys were
		case !now.Before(e.Expires):
			return nil, fmt.Errorf("token %s from site %s expired at %s before site %s redeemed it: %w", id, e.Site, e.Expires.UTC().Format(time.RFC3339), bySite, ErrExpired)
		case len(e.RedeemedBy) >= e.Redemptions:
			return nil, fmt.Errorf("token %s from site %s allows %d site(s) and was redeemed by %s; site %s needs a token of its own: %w", id, e.Site, e.Redemptions, sites(e.RedeemedBy), bySite, ErrUsed)
		default:
			e.RedeemedBy = append(e.RedeemedBy, redemption{Site: bySite, Key: key, At: now.UTC()})
		}
		data, err := yaml.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("token %s: %w", id, err)
		}
		return data, nil
	})
}

// Check admits a link certificate issued for site and key with token id:
// the token must still be in the ledger ([ErrUnknown] once its entry is
// deleted, which revokes the certificates issued with it), and no
// redemption of this ledger may tie site to another key ([ErrNameTaken]).
func (l *Ledger) Check(id, site, key string) error {
	if !hexID.MatchString(id) {
		return fmt.Errorf("token %q: not issued by this site: %w", clip(id), ErrUnknown)
	}
	all, err := l.store.List(state.Tokens)
	if err != nil {
		return fmt.Errorf("token ledger: %w", err)
	}
	if _, err := l.parse(id, all[EntryName(id)]); err != nil {
		return fmt.Errorf("link certificate of site %s: %w", site, err)
	}
	if holder, tok := holderIn(all, site); holder.Key != "" && !holder.holds(key) {
		return fmt.Errorf("link certificate of site %s: the name was taken with token %s by another key: %w", site, tok, ErrNameTaken)
	}
	return nil
}

// holderOf returns the redemption with which site redeemed a token of
// this ledger (its key, and its previous one during a key rotation), and
// that token's id (a zero redemption if none did, or only before keys
// were recorded).
func (l *Ledger) holderOf(site string) (redemption, string, error) {
	all, err := l.store.List(state.Tokens)
	if err != nil {
		return redemption{}, "", fmt.Errorf("token ledger: %w", err)
	}
	r, id := holderIn(all, site)
	return r, id, nil
}

// holderIn is holderOf over the entries all. Entries that do not parse
// are skipped: parse reports them when their token is used.
func holderIn(all map[string][]byte, site string) (redemption, string) {
	for _, name := range slices.Sorted(maps.Keys(all)) {
		tok, ok := strings.CutSuffix(name, ".yaml")
		if !ok || !hexID.MatchString(tok) {
			continue
		}
		var e entry
		if yaml.Unmarshal(all[name], &e) != nil {
			continue
		}
		for _, r := range e.RedeemedBy {
			if r.Site == site && r.Key != "" {
				return r, tok
			}
		}
	}
	return redemption{}, ""
}

// Rekey moves site's redemptions from key old to key new, after site
// rotated its key and endorsed new with old (the caller checked the
// endorsement: netview verifies it in the site's records). Old stays
// honoured beside new (Prev), so that link certificates issued for old
// keep working while the site moves its gateways to new. Entries where
// site redeemed with another key are left alone; it is an error if none
// held old.
func (l *Ledger) Rekey(site, old, new string) error {
	if site == "" || old == "" || new == "" {
		return errors.New("rekey: site, old and new key are required")
	}
	all, err := l.store.List(state.Tokens)
	if err != nil {
		return fmt.Errorf("token ledger: %w", err)
	}
	moved := 0
	for _, name := range slices.Sorted(maps.Keys(all)) {
		id, ok := strings.CutSuffix(name, ".yaml")
		if !ok || !hexID.MatchString(id) {
			continue
		}
		err := l.store.Update(state.Tokens, name, func(cur []byte) ([]byte, error) {
			e, err := l.parse(id, cur)
			if err != nil {
				return nil, err
			}
			changed := false
			for i, r := range e.RedeemedBy {
				if r.Site != site {
					continue
				}
				switch {
				case r.Key == new:
					moved++ // done before (another gateway of this site)
				case r.Key == old:
					e.RedeemedBy[i].Key, e.RedeemedBy[i].Prev = new, old
					changed = true
					moved++
				}
			}
			if !changed {
				return cur, nil
			}
			return yaml.Marshal(e)
		})
		if err != nil && !errors.Is(err, ErrUnknown) {
			return fmt.Errorf("rekey site %s: %w", site, err)
		}
	}
	if moved == 0 {
		return fmt.Errorf("rekey site %s: no token of this site was redeemed by it with key %s: %w", site, netview.Fingerprint(old), ErrNameTaken)
	}
	return nil
}

// Policy returns the policy of the links made with token id, as its
// entry holds it now (the Kubernetes controller keeps the entries current
// with the token-request Secrets' annotations). An entry without a policy
// (written before policies were) allows everything. An id the ledger does
// not hold is [ErrUnknown]; a policy that does not validate is an error
// (a hand-edited entry), so that a link is never let through with a
// policy nobody meant.
func (l *Ledger) Policy(id string) (policy.Policy, error) {
	if !hexID.MatchString(id) {
		return policy.Policy{}, fmt.Errorf("token %.40q: not issued by this site: %w", id, ErrUnknown)
	}
	data, err := l.store.Get(state.Tokens, EntryName(id))
	if err != nil {
		return policy.Policy{}, fmt.Errorf("token ledger: %w", err)
	}
	e, err := l.parse(id, data)
	if err != nil {
		return policy.Policy{}, err
	}
	if err := e.Allow.Validate(); err != nil {
		return policy.Policy{}, fmt.Errorf("token ledger %s: policy of token %s: %w", l.where(id), id, err)
	}
	return e.Allow, nil
}

// parse reads token id's entry, data (nil: the ledger has none).
func (l *Ledger) parse(id string, data []byte) (*entry, error) {
	if data == nil {
		return nil, fmt.Errorf("token %s: not issued by this site: %w", id, ErrUnknown)
	}
	var e entry
	if err := yaml.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("token ledger %s: %w", l.where(id), err)
	}
	if e.ID != id || e.Redemptions < 1 {
		return nil, fmt.Errorf("token ledger %s: id %q, redemptions %d: corrupt entry", l.where(id), e.ID, e.Redemptions)
	}
	return &e, nil
}

func sites(rs []redemption) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Site
	}
	return strings.Join(names, ", ")
}
