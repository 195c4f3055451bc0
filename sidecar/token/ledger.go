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

// LedgerEntry returns the ledger entry of an issued token, for a SeedDir.
func LedgerEntry(t *Token) ([]byte, error) {
	if !hexID.MatchString(t.ID) || t.Redemptions < 1 {
		return nil, fmt.Errorf("ledger entry of token %q: bad id or redemptions %d", t.ID, t.Redemptions)
	}
	data, err := yaml.Marshal(entry{ID: t.ID, Site: t.Site, Endpoint: t.Endpoint, Expires: t.Expires.UTC(), Redemptions: t.Redemptions, RedeemedBy: []redemption{}})
	if err != nil {
		return nil, fmt.Errorf("ledger entry of token %s: %w", t.ID, err)
	}
	return data, nil
}

// entry is a token's file in the ledger.
type entry struct {
	ID          string       `yaml:"id"`
	Site        string       `yaml:"site"`
	Endpoint    string       `yaml:"endpoint"`
	Expires     time.Time    `yaml:"expires"`
	Redemptions int          `yaml:"redemptions"`
	RedeemedBy  []redemption `yaml:"redeemedBy"`
}

type redemption struct {
	Site string    `yaml:"site"`
	At   time.Time `yaml:"at"`
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

// Record adds an issued token to the ledger. Recording an id twice is an
// error.
func (l *Ledger) Record(t *Token) error {
	if !hexID.MatchString(t.ID) {
		return fmt.Errorf("record token: id %q is not lowercase hex", t.ID)
	}
	if t.Redemptions < 1 {
		return fmt.Errorf("record token %s: redemptions must be >= 1, got %d", t.ID, t.Redemptions)
	}
	data, err := yaml.Marshal(entry{ID: t.ID, Site: t.Site, Endpoint: t.Endpoint, Expires: t.Expires.UTC(), Redemptions: t.Redemptions, RedeemedBy: []redemption{}})
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
// bySite, at now. A site that redeemed the token before may always
// reconnect. Otherwise the token must not have expired ([ErrExpired]) and
// fewer than Redemptions other sites may have redeemed it ([ErrUsed]); then
// bySite is recorded. An id the ledger does not hold is [ErrUnknown].
func (l *Ledger) Redeem(id, bySite string, now time.Time) error {
	if !hexID.MatchString(id) {
		return fmt.Errorf("token %q: not issued by this site: %w", id, ErrUnknown)
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
	if slices.ContainsFunc(e.RedeemedBy, func(r redemption) bool { return r.Site == bySite }) {
		return nil
	}
	if !now.Before(e.Expires) {
		return fmt.Errorf("token %s from site %s expired at %s before site %s redeemed it: %w", id, e.Site, e.Expires.UTC().Format(time.RFC3339), bySite, ErrExpired)
	}
	if len(e.RedeemedBy) >= e.Redemptions {
		return fmt.Errorf("token %s from site %s allows %d site(s) and was redeemed by %s; site %s needs a token of its own: %w", id, e.Site, e.Redemptions, sites(e.RedeemedBy), bySite, ErrUsed)
	}
	e.RedeemedBy = append(e.RedeemedBy, redemption{Site: bySite, At: now.UTC()})
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
