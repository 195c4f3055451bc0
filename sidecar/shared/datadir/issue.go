package datadir

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// TokenOptions say which token [IssueToken] issues and where it writes
// it. They are the flags of `skiff-router token issue` ([AddFlags]);
// `skiff token create --site-file` fills them in from its own.
type TokenOptions struct {
	SiteFile    string
	Out         string
	Expires     time.Duration
	Redemptions int
	// Member issues a member token, for this site's own sidecars, instead
	// of a link token for another site.
	Member bool
	// Log hears what IssueToken changes on the way (a data dir it
	// tightened); the zero Logger discards.
	Log logr.Logger
	// Policy is the policy of the links made with the token, kept in the
	// ledger (--allow-advertise, --allow-reach); zero: everything allowed.
	Policy policy.Policy
}

// AddFlags registers the options on fs, as `skiff-router token issue`
// takes them.
func (o *TokenOptions) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.SiteFile, "site-file", "", "site file of the site that issues the token")
	fs.StringVar(&o.Out, "out", "", "where to write the token (YAML, mode 0600)")
	fs.DurationVar(&o.Expires, "expires", 15*time.Minute, "how long the token can be redeemed")
	fs.IntVar(&o.Redemptions, "redemptions", 1, "how many sites may redeem the token")
	fs.BoolVar(&o.Member, "member", false, "issue a member token, for this site's own sidecars (and node agent), instead of a link token for another site")
	fs.Func("allow-advertise", "comma-separated address patterns (backend, backend:8080, db-*, *) the linked site may advertise into this one; may be repeated (default: all)", func(v string) error {
		l, err := policy.Parse(v)
		o.Policy.Advertise = append(o.Policy.Advertise, l...)
		return err
	})
	fs.Func("allow-reach", "comma-separated address patterns of this site the linked site may reach; may be repeated (default: all)", func(v string) error {
		l, err := policy.Parse(v)
		o.Policy.Reach = append(o.Policy.Reach, l...)
		return err
	})
}

// Validate reports missing or malformed options, by their flags' names.
func (o *TokenOptions) Validate() error {
	var errs []error
	if o.SiteFile == "" {
		errs = append(errs, errors.New("--site-file is required"))
	}
	if o.Out == "" {
		errs = append(errs, errors.New("--out is required"))
	}
	if o.Expires <= 0 {
		errs = append(errs, fmt.Errorf("--expires must be positive, got %s", o.Expires))
	}
	if o.Redemptions < 1 {
		errs = append(errs, fmt.Errorf("--redemptions must be >= 1, got %d", o.Redemptions))
	}
	if err := (policy.Policy{Advertise: o.Policy.Advertise}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--allow-advertise: %w", err))
	}
	if err := (policy.Policy{Reach: o.Policy.Reach}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--allow-reach: %w", err))
	}
	return errors.Join(errs...)
}

// IssueToken writes a token of the site in o.SiteFile to o.Out and
// records it in the site's ledger (dataDir/tokens/), creating the data dir
// and the site CA if the site has none yet. The token holds a private
// key: it is written to a new file (mode 0600) beside o.Out and renamed
// over it, so o.Out ends up 0600 whatever was there.
//
// A failure leaves nothing behind: an o.Out that cannot be written fails
// before the data dir, the CA or the ledger is touched; the token file is
// complete before the ledger records the token, and the rename comes last
// (if it fails, the ledger entry is removed again, and so are a data dir
// and CA this call created).
func IssueToken(o TokenOptions, now time.Time) (*token.Token, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	site, err := sitefile.Load(o.SiteFile)
	if err != nil {
		return nil, err
	}
	if site.LinkAccess == nil {
		return nil, fmt.Errorf("site %q has no linkAccess in %s: other sites cannot dial it, so it cannot issue tokens", site.Name, site.Path)
	}
	out, err := os.CreateTemp(filepath.Dir(o.Out), "."+filepath.Base(o.Out)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write token: %w", err)
	}
	created := Missing(site.DataDir, site.CADir)
	renamed := false
	defer func() {
		out.Close()
		if !renamed {
			os.Remove(out.Name())
			RemoveCreated(created, o.Log)
		}
	}()
	tok, err := issue(o, site, now)
	if err != nil {
		return nil, err
	}
	if err := writeToken(out, tok); err != nil {
		return nil, err
	}
	ledger, err := token.OpenLedger(site.DataDir)
	if err != nil {
		return nil, err
	}
	if err := ledger.Record(tok, o.Policy); err != nil {
		return nil, err
	}
	if err := os.Rename(out.Name(), o.Out); err != nil {
		err = fmt.Errorf("write token: %w", err)
		if rerr := ledger.Remove(tok.ID); rerr != nil {
			return nil, errors.Join(err, fmt.Errorf("token %s stays in the ledger but was never handed out: %w", tok.ID, rerr))
		}
		return nil, err
	}
	renamed = true
	return tok, nil
}

// issue makes the token of o for site, with its CA, which it creates (and
// the data dir) if the site has none yet.
func issue(o TokenOptions, site *sitefile.Site, now time.Time) (*token.Token, error) {
	if err := Secure(site.DataDir, o.Log); err != nil {
		return nil, err
	}
	ca, err := pki.LoadOrCreateCA(site.CADir, site.Name)
	if err != nil {
		return nil, err
	}
	if o.Member {
		return token.IssueMember(ca, site.Name, site.LinkAccess.Advertise, o.Expires, now)
	}
	return token.Issue(ca, site.Name, site.LinkAccess.Advertise, o.Expires, o.Redemptions, now)
}

// writeToken writes tok to out, synced and closed.
func writeToken(out *os.File, tok *token.Token) error {
	b, err := tok.Marshal()
	if err != nil {
		return err
	}
	if _, err := out.Write(b); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	return nil
}
