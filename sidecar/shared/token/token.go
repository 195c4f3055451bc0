package token

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
)

// What a token file says it is.
const (
	APIVersion = "skiff.io/v1"
	Kind       = "LinkToken"
)

// CertValidity is how long a token's client certificate is valid. The
// token's Expires bounds only its first use by a site.
const CertValidity = 365 * 24 * time.Hour

// Errors, for errors.Is. Each comes wrapped in a message that names the
// token and what is wrong.
var (
	// ErrExpired: a token used for the first time after it expired.
	ErrExpired = errors.New("token expired")
	// ErrForeignCA: the token's certificate is not signed by the token's
	// CA, or its ca is not a CA certificate.
	ErrForeignCA = errors.New("certificate from a foreign CA")
	// ErrTampered: a field no longer matches the signature, or a PEM
	// field does not parse or pair.
	ErrTampered = errors.New("token tampered with")
	// ErrUsed: the token was redeemed by as many sites as it allows.
	ErrUsed = errors.New("token already used")
	// ErrUnknown: the issuing site has no record of the token.
	ErrUnknown = errors.New("unknown token")
	// ErrNameTaken: the redeeming site's name was taken, with a token of
	// the same issuer, by a site with another key.
	ErrNameTaken = errors.New("site name taken by another key")
	// ErrMalformed: the file is not a link token (bad YAML, unknown or
	// missing fields, wrong apiVersion or kind).
	ErrMalformed = errors.New("malformed token")
)

// Token is a link token.
type Token struct {
	APIVersion  string
	Kind        string
	ID          string // the client certificate's serial, lowercase hex
	Site        string // the issuing site
	Endpoint    string // host:port of the issuing site's link access
	Expires     time.Time
	Redemptions int    // how many distinct sites may redeem it
	CA          string // PEM of the issuing site's CA certificate; during a CA rotation the current one, then the previous one
	Cert        string // PEM client certificate, CN "link-token:<id>"
	Key         string // PEM key of Cert
	Signature   string // base64 ECDSA (ASN.1) signature by the CA key, see signedBytes
}

// Issue makes a token for site's link endpoint: a new client certificate
// from ca, valid for [CertValidity], and a signature over the whole. The
// token expires ttl after now (to the second, rounded down); redemptions 0
// means 1.
func Issue(ca *pki.CA, site, endpoint string, ttl time.Duration, redemptions int, now time.Time) (*Token, error) {
	return issueWith(ca, site, endpoint, ttl, redemptions, now, CommonName)
}

// IssueMember makes a member token: what a sidecar of site (or its node
// agent) presents to its own gateway and controller. Its certificate's CN
// is [MemberCommonName], so that it can be told from the link tokens the
// site hands to other sites: a gateway admits a sidecar only with a
// member token, and a site only with a link token; the controller's xDS
// port refuses link tokens. It allows one redemption (by site itself).
func IssueMember(ca *pki.CA, site, endpoint string, ttl time.Duration, now time.Time) (*Token, error) {
	return issueWith(ca, site, endpoint, ttl, 1, now, MemberCommonName)
}

func issueWith(ca *pki.CA, site, endpoint string, ttl time.Duration, redemptions int, now time.Time, cn func(string) string) (*Token, error) {
	switch {
	case ca == nil:
		return nil, errors.New("issue token: no CA")
	case names.CheckSite(site) != nil:
		return nil, fmt.Errorf("issue token: %w", names.CheckSite(site))
	case ttl <= 0:
		return nil, fmt.Errorf("issue token: ttl must be positive, got %s", ttl)
	case redemptions < 0:
		return nil, fmt.Errorf("issue token: redemptions must be >= 1, got %d", redemptions)
	}
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return nil, fmt.Errorf("issue token: endpoint: %w", err)
	}
	if redemptions == 0 {
		redemptions = 1
	}
	serial, err := pki.NewSerial()
	if err != nil {
		return nil, fmt.Errorf("issue token: %w", err)
	}
	id := serial.Text(16)
	certPEM, keyPEM, err := ca.IssueClientSerial(serial, cn(id), CertValidity)
	if err != nil {
		return nil, fmt.Errorf("issue token: %w", err)
	}
	t := &Token{
		APIVersion:  APIVersion,
		Kind:        Kind,
		ID:          id,
		Site:        site,
		Endpoint:    endpoint,
		Expires:     now.Add(ttl).UTC().Truncate(time.Second),
		Redemptions: redemptions,
		CA:          string(ca.BundlePEM()), // both CAs during a rotation
		Cert:        string(certPEM),
		Key:         string(keyPEM),
	}
	digest := sha256.Sum256(t.signedBytes())
	sig, err := ecdsa.SignASN1(rand.Reader, ca.Key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("issue token: sign: %w", err)
	}
	t.Signature = base64.StdEncoding.EncodeToString(sig)
	return t, nil
}

// MemberCommonName is the subject CN of a member token's client
// certificate.
func MemberCommonName(id string) string {
	return "member-token:" + id
}

// IsMember reports whether t is a member token (its certificate's CN is
// MemberCommonName). It reads the certificate; a token that does not
// parse is no member token.
func (t *Token) IsMember() bool {
	cert, err := pki.ParseCertificate([]byte(t.Cert))
	return err == nil && cert.Subject.CommonName == MemberCommonName(t.ID)
}

// CommonName is the subject CN of a link token's client certificate.
func CommonName(id string) string {
	return "link-token:" + id
}

// signedBytes is the canonical encoding the signature covers: every field
// but the signature, in a fixed order, each length-prefixed so that no two
// different tokens encode alike.
func (t *Token) signedBytes() []byte {
	var b bytes.Buffer
	b.WriteString("skiff link token signature v1\n")
	for _, f := range [][2]string{
		{"apiVersion", t.APIVersion},
		{"kind", t.Kind},
		{"id", t.ID},
		{"site", t.Site},
		{"endpoint", t.Endpoint},
		{"expires", t.Expires.UTC().Format(time.RFC3339Nano)},
		{"redemptions", strconv.Itoa(t.Redemptions)},
		{"ca", t.CA},
		{"cert", t.Cert},
		{"key", t.Key},
	} {
		fmt.Fprintf(&b, "%s %d\n%s\n", f[0], len(f[1]), f[1])
	}
	return b.Bytes()
}

// fields are the keys of a token file, in the order Marshal writes them.
var fields = []string{"apiVersion", "kind", "id", "site", "endpoint", "expires", "redemptions", "ca", "cert", "key", "signature"}

// Marshal encodes the token as YAML, as it is; it checks nothing.
func (t *Token) Marshal() ([]byte, error) {
	str := func(v string) *yaml.Node {
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
		if strings.HasPrefix(v, "\n") || strings.HasPrefix(v, " ") || strings.HasPrefix(v, "\t") {
			// yaml.v3 writes such a value as a block scalar that reads back
			// without its leading blank line (found by FuzzParse; the
			// seed is kept in testdata/fuzz).
			n.Style = yaml.DoubleQuotedStyle
		}
		return n
	}
	values := []*yaml.Node{
		str(t.APIVersion),
		str(t.Kind),
		str(t.ID),
		str(t.Site),
		str(t.Endpoint),
		{Kind: yaml.ScalarNode, Tag: "!!timestamp", Value: t.Expires.UTC().Format(time.RFC3339Nano)},
		{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(t.Redemptions)},
		str(t.CA),
		str(t.Cert),
		str(t.Key),
		str(t.Signature),
	}
	doc := &yaml.Node{
		Kind: yaml.MappingNode,
		HeadComment: fmt.Sprintf("Link token issued by site %s. It holds a private key: keep it secret.\n"+
			"List it under links: in the site file of the site that should dial %s.", t.Site, t.Site),
	}
	for i, v := range values {
		doc.Content = append(doc.Content, str(fields[i]), v)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("marshal token %s: %w", t.ID, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal token %s: %w", t.ID, err)
	}
	return b.Bytes(), nil
}

// wire is a token file's fields as YAML types.
type wire struct {
	APIVersion  string `yaml:"apiVersion"`
	Kind        string `yaml:"kind"`
	ID          string `yaml:"id"`
	Site        string `yaml:"site"`
	Endpoint    string `yaml:"endpoint"`
	Expires     string `yaml:"expires"`
	Redemptions *int   `yaml:"redemptions"`
	CA          string `yaml:"ca"`
	Cert        string `yaml:"cert"`
	Key         string `yaml:"key"`
	Signature   string `yaml:"signature"`
}

var hexID = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// Parse decodes a token file strictly: one YAML document, a mapping of the
// known fields only, each once, all present but redemptions (default 1).
// It checks form, not integrity: see [Token.Verify]. Errors wrap
// [ErrMalformed].
func Parse(data []byte) (*Token, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("empty file: %w", ErrMalformed)
		}
		return nil, fmt.Errorf("%s: %w", strings.TrimPrefix(err.Error(), "yaml: "), ErrMalformed)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("more than one YAML document: %w", ErrMalformed)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("not a YAML mapping: %w", ErrMalformed)
	}
	root := doc.Content[0]
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Kind != yaml.ScalarNode || !slices.Contains(fields, k.Value) {
			return nil, fmt.Errorf("line %d: unknown field %q: %w", k.Line, k.Value, ErrMalformed)
		}
		if line, dup := seen[k.Value]; dup {
			return nil, fmt.Errorf("line %d: field %q repeats line %d: %w", k.Line, k.Value, line, ErrMalformed)
		}
		seen[k.Value] = k.Line
	}
	var w wire
	if err := root.Decode(&w); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.TrimPrefix(err.Error(), "yaml: "), ErrMalformed)
	}
	t := &Token{
		APIVersion: w.APIVersion, Kind: w.Kind, ID: w.ID, Site: w.Site, Endpoint: w.Endpoint, Redemptions: 1,
		CA: w.CA, Cert: w.Cert, Key: w.Key, Signature: w.Signature,
	}
	var problems []string
	if w.APIVersion != APIVersion || w.Kind != Kind {
		problems = append(problems, fmt.Sprintf("apiVersion %q, kind %q: want %s %s", w.APIVersion, w.Kind, APIVersion, Kind))
	}
	if !hexID.MatchString(w.ID) {
		problems = append(problems, fmt.Sprintf("id %q: want lowercase hex", w.ID))
	}
	if w.Redemptions != nil {
		t.Redemptions = *w.Redemptions
		if t.Redemptions < 1 {
			problems = append(problems, fmt.Sprintf("redemptions %d: want >= 1", t.Redemptions))
		}
	}
	if _, _, err := net.SplitHostPort(w.Endpoint); err != nil {
		problems = append(problems, fmt.Sprintf("endpoint %q: want host:port", w.Endpoint))
	}
	if exp, err := time.Parse(time.RFC3339Nano, w.Expires); err != nil {
		problems = append(problems, fmt.Sprintf("expires %q: want an RFC 3339 time", w.Expires))
	} else {
		t.Expires = exp.UTC()
	}
	if w.Site != "" {
		if err := names.CheckSite(w.Site); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, f := range []struct{ name, v string }{{"site", w.Site}, {"ca", w.CA}, {"cert", w.Cert}, {"key", w.Key}, {"signature", w.Signature}} {
		if f.v == "" {
			problems = append(problems, f.name+" missing")
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %w", strings.Join(problems, "; "), ErrMalformed)
	}
	return t, nil
}

// Load reads and parses the token file at path; errors name the file.
func Load(path string) (*Token, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read token: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("token %s: %w", path, err)
	}
	return t, nil
}

// clip shortens what a peer sent before it goes into an error message.
func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "…"
}
