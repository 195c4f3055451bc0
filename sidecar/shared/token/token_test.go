package token

import (
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
)

var now = time.Date(2026, 11, 23, 21, 45, 0, 0, time.UTC)

func newCA(t *testing.T, site string) *pki.CA {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), site)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *pki.CA, site string) *Token {
	t.Helper()
	tok, err := Issue(ca, site, "127.0.0.1:55671", 15*time.Minute, 1, now)
	if err != nil {
		t.Fatalf("Issue() error = %v", err)
	}
	return tok
}

func TestIssue(t *testing.T) {
	ca := newCA(t, "east")
	tok, err := Issue(ca, "east", "east.example.com:55671", 15*time.Minute+500*time.Millisecond, 0, now.Add(300*time.Millisecond))
	if err != nil {
		t.Fatalf("Issue() error = %v", err)
	}
	want := &Token{APIVersion: "skiff.io/v1", Kind: "LinkToken", Site: "east", Endpoint: "east.example.com:55671", Expires: now.Add(15 * time.Minute), Redemptions: 1, CA: string(ca.CertPEM)}
	got := *tok
	got.ID, got.Cert, got.Key, got.Signature = "", "", "", ""
	if diff := cmp.Diff(&got, want); diff != "" {
		t.Errorf("Issue() (-got +want):\n%s", diff)
	}
	cert, err := pki.ParseCertificate([]byte(tok.Cert))
	if err != nil {
		t.Fatal(err)
	}
	if cert.SerialNumber.Text(16) != tok.ID || cert.Subject.CommonName != "link-token:"+tok.ID {
		t.Errorf("cert serial %x CN %q, token id %s", cert.SerialNumber, cert.Subject.CommonName, tok.ID)
	}
	if life := time.Until(cert.NotAfter); life < CertValidity-time.Minute || life > CertValidity {
		t.Errorf("cert valid for another %s, want about %s", life, CertValidity)
	}
	if err := tok.Verify(now); err != nil {
		t.Errorf("Verify() of a fresh token error = %v", err)
	}
	other := issue(t, ca, "east")
	if other.ID == tok.ID {
		t.Errorf("two tokens share id %s", tok.ID)
	}
}

func TestIssueErrors(t *testing.T) {
	ca := newCA(t, "east")
	tests := []struct {
		name        string
		ca          *pki.CA
		site, ep    string
		ttl         time.Duration
		redemptions int
	}{
		{"no CA", nil, "east", "127.0.0.1:1", time.Minute, 1},
		{"no site", ca, "", "127.0.0.1:1", time.Minute, 1},
		{"endpoint without port", ca, "east", "127.0.0.1", time.Minute, 1},
		{"zero ttl", ca, "east", "127.0.0.1:1", 0, 1},
		{"negative redemptions", ca, "east", "127.0.0.1:1", time.Minute, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Issue(tt.ca, tt.site, tt.ep, tt.ttl, tt.redemptions, now); err == nil {
				t.Error("Issue() succeeded")
			}
		})
	}
}

func TestVerifyIntegrity(t *testing.T) {
	east, other := newCA(t, "east"), newCA(t, "other")
	good := issue(t, east, "east")
	sibling := issue(t, east, "east")       // another token of the same site
	foreign := issue(t, other, "other")     // a token of another site
	leafAsCA := issue(t, east, "east").Cert // a certificate that is no CA

	tests := []struct {
		name   string
		mutate func(*Token)
		want   error
	}{
		{"untouched", func(*Token) {}, nil},
		{"endpoint changed", func(tk *Token) { tk.Endpoint = "127.0.0.1:9" }, ErrTampered},
		{"expires extended", func(tk *Token) { tk.Expires = tk.Expires.Add(24 * time.Hour) }, ErrTampered},
		{"site changed", func(tk *Token) { tk.Site = "west" }, ErrTampered},
		{"redemptions raised", func(tk *Token) { tk.Redemptions = 100 }, ErrTampered},
		{"kind changed", func(tk *Token) { tk.Kind = "Other" }, ErrTampered},
		{"id changed", func(tk *Token) { tk.ID = "abc" }, ErrTampered},
		{"signature changed", func(tk *Token) { tk.Signature = sibling.Signature }, ErrTampered},
		{"signature not base64", func(tk *Token) { tk.Signature = "%%%" }, ErrTampered},
		{"signature empty", func(tk *Token) { tk.Signature = "" }, ErrTampered},
		{"key of another token", func(tk *Token) { tk.Key = sibling.Key }, ErrTampered},
		{"cert of another token of the same site", func(tk *Token) { tk.Cert = sibling.Cert }, ErrTampered},
		{"ca not PEM", func(tk *Token) { tk.CA = "garbage" }, ErrTampered},
		{"cert not PEM", func(tk *Token) { tk.Cert = "garbage" }, ErrTampered},
		{"cert signed by another CA", func(tk *Token) { tk.Cert, tk.Key = foreign.Cert, foreign.Key }, ErrForeignCA},
		{"ca of another site", func(tk *Token) { tk.CA = foreign.CA }, ErrForeignCA},
		{"ca is not a CA", func(tk *Token) { tk.CA = leafAsCA }, ErrForeignCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := *good
			tt.mutate(&tk)
			err := tk.VerifyIntegrity()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("VerifyIntegrity() error = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), "token "+tk.ID+" from site "+tk.Site) {
				t.Errorf("error %q does not name the token", err)
			}
			if err := tk.Verify(now); !errors.Is(err, tt.want) {
				t.Errorf("Verify() error = %v, want %v", err, tt.want)
			}
		})
	}
}

// A token edited as text, the way a user or an attacker would, fails.
func TestTamperedFile(t *testing.T) {
	tok := issue(t, newCA(t, "east"), "east")
	data, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ old, new string }{
		{"endpoint: 127.0.0.1:55671", "endpoint: 127.0.0.1:9"},
		{"expires: 2026-11-23T22:00:00Z", "expires: 2027-11-23T22:00:00Z"},
		{"redemptions: 1", "redemptions: 5"},
		{"site: east", "site: west"},
	}
	for _, tt := range tests {
		t.Run(tt.old, func(t *testing.T) {
			edited := strings.Replace(string(data), tt.old, tt.new, 1)
			if edited == string(data) {
				t.Fatalf("token has no %q:\n%s", tt.old, data)
			}
			tk, err := Parse([]byte(edited))
			if err != nil {
				t.Fatal(err)
			}
			if err := tk.Verify(now); !errors.Is(err, ErrTampered) {
				t.Errorf("Verify() error = %v, want ErrTampered", err)
			}
		})
	}
}

func TestVerifyExpiry(t *testing.T) {
	tok := issue(t, newCA(t, "east"), "east")
	tests := []struct {
		at   time.Time
		want error
	}{
		{now, nil},
		{tok.Expires.Add(-time.Nanosecond), nil},
		{tok.Expires, ErrExpired},
		{tok.Expires.Add(time.Hour), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.at.String(), func(t *testing.T) {
			err := tok.Verify(tt.at)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.want)
			}
			if err != nil {
				want := "token " + tok.ID + " from site east expired at 2026-11-23T22:00:00Z"
				if !strings.HasPrefix(err.Error(), want) {
					t.Errorf("error %q does not start %q", err, want)
				}
			}
		})
	}
}

func TestMarshalParseRoundTrip(t *testing.T) {
	ca := newCA(t, "east")
	tests := []struct {
		name string
		tok  *Token
	}{
		{"issued", issue(t, ca, "east")},
		{"several redemptions, sub-second expiry", func() *Token {
			tk, err := Issue(ca, "east", "[::1]:55671", time.Hour, 3, now)
			if err != nil {
				t.Fatal(err)
			}
			tk.Expires = tk.Expires.Add(123 * time.Millisecond)
			return tk
		}()},
		{"values YAML would read as other types", &Token{
			APIVersion: "skiff.io/v1", Kind: "LinkToken", ID: "1234", Site: "true", Endpoint: "1.5:80",
			Expires: now, Redemptions: 1, CA: "null", Cert: "- a\n- b\n", Key: "k: v\n", Signature: "0x10",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.tok.Marshal()
			if err != nil {
				t.Fatalf("Marshal() error = %v", err)
			}
			got, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse() error = %v\n%s", err, data)
			}
			if diff := cmp.Diff(got, tt.tok); diff != "" {
				t.Errorf("round trip (-got +want):\n%s", diff)
			}
		})
	}
}

// The file reads as the design documents it.
func TestMarshalLayout(t *testing.T) {
	tok := issue(t, newCA(t, "east"), "east")
	data, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || line[0] == ' ' || line[0] == '#' {
			continue
		}
		keys = append(keys, line)
	}
	want := []string{
		"apiVersion: skiff.io/v1",
		"kind: LinkToken",
		"id: " + tok.ID,
		"site: east",
		"endpoint: 127.0.0.1:55671",
		"expires: 2026-11-23T22:00:00Z",
		"redemptions: 1",
		"ca: |",
		"cert: |",
		"key: |",
		"signature: " + tok.Signature,
	}
	if diff := cmp.Diff(keys, want); diff != "" {
		t.Errorf("top-level lines (-got +want):\n%s\nfile:\n%s", diff, data)
	}
}

func TestParseErrors(t *testing.T) {
	tok := issue(t, newCA(t, "east"), "east")
	data, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	good := string(data)
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "empty file"},
		{"not YAML", "a: [", "did not find expected"},
		{"list", "- a\n", "not a YAML mapping"},
		{"two documents", good + "---\na: b\n", "more than one YAML document"},
		{"unknown field", good + "colour: red\n", `unknown field "colour"`},
		{"duplicate field", good + "site: west\n", `field "site" repeats`},
		{"wrong kind", strings.Replace(good, "kind: LinkToken", "kind: Secret", 1), `kind "Secret"`},
		{"wrong type", strings.Replace(good, "redemptions: 1", "redemptions: [1]", 1), "cannot unmarshal"},
		{"zero redemptions", strings.Replace(good, "redemptions: 1", "redemptions: 0", 1), "redemptions 0"},
		{"bad expires", strings.Replace(good, "expires: 2026-11-23T22:00:00Z", "expires: tomorrow", 1), `expires "tomorrow"`},
		{"bad endpoint", strings.Replace(good, "endpoint: 127.0.0.1:55671", "endpoint: somewhere", 1), `endpoint "somewhere"`},
		{"bad id", strings.Replace(good, "id: "+tok.ID, "id: ../../etc/passwd", 1), `id "../../etc/passwd"`},
		{"missing fields", "apiVersion: skiff.io/v1\nkind: LinkToken\nid: ab\nendpoint: a:1\nexpires: 2026-11-23T22:00:00Z\n", "site missing; ca missing; cert missing; key missing; signature missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.data))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse() error = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse() error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestParseRedemptionsDefault(t *testing.T) {
	tok := issue(t, newCA(t, "east"), "east")
	data, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse([]byte(strings.Replace(string(data), "redemptions: 1\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Redemptions != 1 {
		t.Errorf("Redemptions = %d, want the default 1", got.Redemptions)
	}
	if err := got.Verify(now); err != nil {
		t.Errorf("Verify() error = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	tok := issue(t, newCA(t, "east"), "east")
	data, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, data, 0o600)
	os.WriteFile(bad, []byte("kind: Secret\n"), 0o600)
	got, err := Load(good)
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if diff := cmp.Diff(got, tok); diff != "" {
		t.Errorf("Load() (-got +want):\n%s", diff)
	}
	if _, err := Load(bad); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load(bad) error = %v, want ErrMalformed naming %s", err, bad)
	}
	missing := filepath.Join(dir, "nope.yaml")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) error = %v, want fs.ErrNotExist naming %s", err, missing)
	}
}

// A token's TLS configuration completes a real mutual TLS 1.3 handshake
// with its site's gateway configuration, and only with that site's.
func TestClientTLS(t *testing.T) {
	east, other := newCA(t, "east"), newCA(t, "other")
	tok := issue(t, east, "east")
	cfg, err := tok.ClientTLS()
	if err != nil {
		t.Fatalf("ClientTLS() error = %v", err)
	}
	if cfg.ServerName != "east.skiff.local" || cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("ServerName %q MinVersion %x, want east.skiff.local and TLS 1.3", cfg.ServerName, cfg.MinVersion)
	}
	for _, tt := range []struct {
		name   string
		ca     *pki.CA
		site   string
		wantOK bool
	}{
		{"the token's site", east, "east", true},
		{"another site", other, "other", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srvCert, err := tt.ca.IssueServer(tt.site, []string{"127.0.0.1"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			srvCfg := pki.ServerTLS(tt.ca, srvCert)
			ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			serverSaw := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.HandshakeContext(t.Context()) != nil {
					serverSaw <- ""
					return
				}
				serverSaw <- tc.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
				io.Copy(io.Discard, tc)
			}()
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
			c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
			if (err == nil) != tt.wantOK {
				t.Fatalf("dial error = %v, want success %v", err, tt.wantOK)
			}
			if err == nil {
				defer c.Close()
				if id := <-serverSaw; id != tok.ID {
					t.Errorf("server saw client certificate %s, want token id %s", id, tok.ID)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	ca, err := pki.LoadOrCreateCA(f.TempDir(), "east")
	if err != nil {
		f.Fatal(err)
	}
	tok, err := Issue(ca, "east", "127.0.0.1:55671", time.Minute, 2, now)
	if err != nil {
		f.Fatal(err)
	}
	data, err := tok.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("apiVersion: skiff.io/v1\nkind: LinkToken\nid: ab\nsite: s\nendpoint: a:1\nexpires: 2026-11-23T22:00:00Z\nca: c\ncert: c\nkey: k\nsignature: s\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("apiVersion: skiff.io/v1\nkind: LinkToken\nid: ab\nsite: ../../../pwned\nendpoint: a:1\nexpires: 2026-11-23T22:00:00Z\nca: c\ncert: c\nkey: k\nsignature: s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse() error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// A parsed token's site and id are safe names: they may be
		// logged, never a path.
		if names.CheckSite(tk.Site) != nil || !hexID.MatchString(tk.ID) {
			t.Fatalf("Parse() accepted site %q, id %q", tk.Site, tk.ID)
		}
		// Whatever parses survives a round trip and can be checked.
		out, err := tk.Marshal()
		if err != nil {
			t.Fatalf("Marshal() error = %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal()) error = %v\n%s", err, out)
		}
		if diff := cmp.Diff(again, tk); diff != "" {
			t.Errorf("round trip (-got +want):\n%s", diff)
		}
		_ = tk.Verify(now)
		_, _ = tk.ClientTLS()
	})
}

// TestParseRefusesPathInSite: a token naming a site "../../../pwned" made
// the dialling gateway write a redemption marker outside its data dir
// (issue 12). Such a token does not parse, whatever its signature.
func TestParseRefusesPathInSite(t *testing.T) {
	for _, site := range []string{"../../../pwned", "a/b", "West", "a\nb", strings.Repeat("a", 64)} {
		in := "apiVersion: skiff.io/v1\nkind: LinkToken\nid: ab\nsite: " + strconv.Quote(site) + "\nendpoint: a:1\nexpires: 2026-11-23T22:00:00Z\nca: c\ncert: c\nkey: k\nsignature: s\n"
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "site name") {
			t.Errorf("Parse(site %q) error = %v, want a malformed site name", site, err)
		}
	}
}
