package token

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/skiff-io/skiff/sidecar/pki"
	"github.com/skiff-io/skiff/sidecar/policy"
)

// LedgerDir is the ledger's directory inside a site's data dir.
const LedgerDir = "tokens"

// Ledger is the issuing site's record of the tokens it issued and of the
// sites that redeemed them: one file per token, dataDir/tokens/<id>.yaml
// (mode 0600). Nothing is cached, so a running gateway sees tokens that
// `skiff-router token issue` records later.
//
// Redeem is safe for concurrent use within a process. Writes are atomic
// (temporary file and rename), so a reader never sees half a file; two
// processes redeeming tokens from one data dir at once are not supported.
type Ledger struct {
	dir string
	mu  sync.Mutex // serializes read-modify-write of entries

	// SeedDir, when set, holds entries of tokens issued elsewhere with
	// this site's CA (by the Kubernetes controller), as ledger-<id>.yaml
	// files written by [LedgerEntry]. An id the ledger does not hold is
	// adopted from there on first use; redemptions are then recorded in
	// the ledger itself.
	SeedDir string
}

// SeedFile is the name of a token's entry in a ledger's SeedDir.
func SeedFile(id string) string { return "ledger-" + id + ".yaml" }

// LedgerEntry returns the ledger entry of an issued token, for a SeedDir,
// with the policy of the links made with it (the zero Policy allows all).
func LedgerEntry(t *Token, p policy.Policy) ([]byte, error) {
	if !hexID.MatchString(t.ID) || t.Redemptions < 1 {
		return nil, fmt.Errorf("ledger entry of token %q: bad id or redemptions %d", t.ID, t.Redemptions)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("ledger entry of token %s: policy: %w", t.ID, err)
	}
	data, err := yaml.Marshal(entry{ID: t.ID, Site: t.Site, Endpoint: t.Endpoint, Expires: t.Expires.UTC(), Redemptions: t.Redemptions, Allow: p, RedeemedBy: []redemption{}})
	if err != nil {
		return nil, fmt.Errorf("ledger entry of token %s: %w", t.ID, err)
	}
	return data, nil
}

// entry is a token's file in the ledger.
type entry struct {
	ID          string    `yaml:"id"`
	Site        string    `yaml:"site"`
	Endpoint    string    `yaml:"endpoint"`
	Expires     time.Time `yaml:"expires"`
	Redemptions int       `yaml:"redemptions"`
	// Allow is the policy of the links made with the token; entries
	// written before policies were have none: everything is allowed.
	Allow      policy.Policy `yaml:"allow,omitempty"`
	RedeemedBy []redemption  `yaml:"redeemedBy"`
}

type redemption struct {
	Site string `yaml:"site"`
	// Key is the redeeming site's public key (base64 PKIX, as in its
	// site records): the site name stays with it.
	Key string    `yaml:"key,omitempty"`
	At  time.Time `yaml:"at"`
}

// OpenLedger opens the ledger in dataDir, creating its directory, or
// tightening it, to 0700 ([pki.SecureDir]).
func OpenLedger(dataDir string) (*Ledger, error) {
	dir := filepath.Join(dataDir, LedgerDir)
	if _, err := pki.SecureDir(dir); err != nil {
		return nil, fmt.Errorf("open token ledger: %w", err)
	}
	return &Ledger{dir: dir}, nil
}

func (l *Ledger) path(id string) string {
	return filepath.Join(l.dir, id+".yaml")
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
	if err := p.Validate(); err != nil {
		return fmt.Errorf("record token %s: policy: %w", t.ID, err)
	}
	data, err := yaml.Marshal(entry{ID: t.ID, Site: t.Site, Endpoint: t.Endpoint, Expires: t.Expires.UTC(), Redemptions: t.Redemptions, Allow: p, RedeemedBy: []redemption{}})
	if err != nil {
		return fmt.Errorf("record token %s: %w", t.ID, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	tmp, err := writeTemp(l.dir, data)
	if err != nil {
		return fmt.Errorf("record token %s: %w", t.ID, err)
	}
	defer os.Remove(tmp)
	// Link, unlike rename, fails if the file exists.
	if err := os.Link(tmp, l.path(t.ID)); err != nil {
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := os.Remove(l.path(id)); err != nil {
		return fmt.Errorf("remove token %s: %w", id, err)
	}
	return nil
}

// Redeem admits a link client whose certificate is token id's, from site
// bySite holding key (the site's public key, as link hellos carry it), at
// now. A site that redeemed the token before with the same key may always
// reconnect. Otherwise the token must not have expired ([ErrExpired]),
// fewer than Redemptions other sites may have redeemed it ([ErrUsed]), and
// no token of this ledger may have been redeemed under the name bySite
// with another key ([ErrNameTaken]); then bySite and key are recorded. An
// id the ledger does not hold is [ErrUnknown]. Redemptions recorded
// before keys were (without one) take the key of the next one.
func (l *Ledger) Redeem(id, bySite, key string, now time.Time) error {
	if !hexID.MatchString(id) {
		return fmt.Errorf("token %q: not issued by this site: %w", clip(id), ErrUnknown)
	}
	if bySite == "" {
		return fmt.Errorf("token %s: redeeming site has no name", id)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, err := l.read(id)
	if err != nil {
		return err
	}
	if holder, tok := l.holderOf(bySite); holder != "" && key != holder {
		return fmt.Errorf("token %s: site name %q was taken with token %s by another key; a site keeps its name with the key it first linked with: %w", id, bySite, tok, ErrNameTaken)
	}
	i := slices.IndexFunc(e.RedeemedBy, func(r redemption) bool { return r.Site == bySite })
	switch {
	case i >= 0 && e.RedeemedBy[i].Key == key:
		return nil
	case i >= 0 && e.RedeemedBy[i].Key != "":
		return fmt.Errorf("token %s: site %q redeemed it with another key: %w", id, bySite, ErrNameTaken)
	case i >= 0:
		e.RedeemedBy[i].Key = key // recorded before keys were
	case !now.Before(e.Expires):
		return fmt.Errorf("token %s from site %s expired at %s before site %s redeemed it: %w", id, e.Site, e.Expires.UTC().Format(time.RFC3339), bySite, ErrExpired)
	case len(e.RedeemedBy) >= e.Redemptions:
		return fmt.Errorf("token %s from site %s allows %d site(s) and was redeemed by %s; site %s needs a token of its own: %w", id, e.Site, e.Redemptions, sites(e.RedeemedBy), bySite, ErrUsed)
	default:
		e.RedeemedBy = append(e.RedeemedBy, redemption{Site: bySite, Key: key, At: now.UTC()})
	}
	data, err := yaml.Marshal(e)
	if err != nil {
		return fmt.Errorf("token %s: %w", id, err)
	}
	tmp, err := writeTemp(l.dir, data)
	if err != nil {
		return fmt.Errorf("record redemption of token %s: %w", id, err)
	}
	if err := os.Rename(tmp, l.path(id)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("record redemption of token %s: %w", id, err)
	}
	return nil
}

// Check admits a link certificate issued for site and key with token id:
// the token must still be in the ledger ([ErrUnknown] once its entry is
// deleted, which revokes the certificates issued with it), and no
// redemption of this ledger may tie site to another key ([ErrNameTaken]).
func (l *Ledger) Check(id, site, key string) error {
	if !hexID.MatchString(id) {
		return fmt.Errorf("token %q: not issued by this site: %w", clip(id), ErrUnknown)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.read(id); err != nil {
		return fmt.Errorf("link certificate of site %s: %w", site, err)
	}
	if holder, tok := l.holderOf(site); holder != "" && holder != key {
		return fmt.Errorf("link certificate of site %s: the name was taken with token %s by another key: %w", site, tok, ErrNameTaken)
	}
	return nil
}

// holderOf returns the key with which site redeemed a token of this
// ledger, and that token's id ("" if none did, or only before keys were
// recorded). Entries that do not parse are skipped: read reports them
// when their token is used.
func (l *Ledger) holderOf(site string) (key, id string) {
	files, err := os.ReadDir(l.dir)
	if err != nil {
		return "", ""
	}
	for _, f := range files {
		name, ok := strings.CutSuffix(f.Name(), ".yaml")
		if !ok || !hexID.MatchString(name) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(l.dir, f.Name()))
		if err != nil {
			continue
		}
		var e entry
		if yaml.Unmarshal(data, &e) != nil {
			continue
		}
		for _, r := range e.RedeemedBy {
			if r.Site == site && r.Key != "" {
				return r.Key, name
			}
		}
	}
	return "", ""
}

// Policy returns the policy of the links made with token id. It is that
// of the token's entry in SeedDir when there is one: the Kubernetes
// controller keeps that entry current from the token-request Secret's
// annotations, while the ledger's own copy is taken when the token is
// first redeemed. Otherwise it is that of the ledger entry. An entry
// without a policy (written before policies were) allows everything. An
// id neither holds is [ErrUnknown]; a policy that does not validate is an
// error (a hand-edited entry), so that a link is never let through with a
// policy nobody meant. Like Redeem, Policy reads the files on every call.
func (l *Ledger) Policy(id string) (policy.Policy, error) {
	if !hexID.MatchString(id) {
		return policy.Policy{}, fmt.Errorf("token %.40q: not issued by this site: %w", id, ErrUnknown)
	}
	path := ""
	var e entry
	if l.SeedDir != "" {
		path = filepath.Join(l.SeedDir, SeedFile(id))
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			path = ""
		case err != nil:
			return policy.Policy{}, fmt.Errorf("token ledger: %w", err)
		default:
			if err := yaml.Unmarshal(data, &e); err != nil {
				return policy.Policy{}, fmt.Errorf("token ledger %s: %w", path, err)
			}
			if e.ID != id {
				return policy.Policy{}, fmt.Errorf("token ledger %s: id %q: corrupt entry", path, e.ID)
			}
		}
	}
	if path == "" {
		path = l.path(id)
		got, err := l.read(id)
		if err != nil {
			return policy.Policy{}, err
		}
		e = *got
	}
	if err := e.Allow.Validate(); err != nil {
		return policy.Policy{}, fmt.Errorf("token ledger %s: policy of token %s: %w", path, id, err)
	}
	return e.Allow, nil
}

func (l *Ledger) read(id string) (*entry, error) {
	data, err := os.ReadFile(l.path(id))
	if errors.Is(err, fs.ErrNotExist) && l.SeedDir != "" {
		if seed, serr := os.ReadFile(filepath.Join(l.SeedDir, SeedFile(id))); serr == nil {
			data, err = seed, nil
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("token %s: not issued by this site: %w", id, ErrUnknown)
	}
	if err != nil {
		return nil, fmt.Errorf("token ledger: %w", err)
	}
	var e entry
	if err := yaml.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("token ledger %s: %w", l.path(id), err)
	}
	if e.ID != id || e.Redemptions < 1 {
		return nil, fmt.Errorf("token ledger %s: id %q, redemptions %d: corrupt entry", l.path(id), e.ID, e.Redemptions)
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

// writeTemp writes data to a new file (mode 0600) in dir, synced, and
// returns its name.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
