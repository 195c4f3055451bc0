package app

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// A sidecar reads its credential again when the file changes: the
// controller renews the member token and the kubelet swaps the Secret's
// files, and the sidecar's next dial presents the new one.
func TestCredentialReloader(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "east")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token.yaml")
	write := func() *token.Token {
		tok, err := token.IssueMember(ca, "east", "127.0.0.1:1", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, err := tok.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	serial := func(reload func() (*tls.Config, error)) string {
		t.Helper()
		cfg, err := reload()
		if err != nil {
			t.Fatal(err)
		}
		c, err := cfg.GetClientCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.Text(16)
	}
	a := write()
	reload := credentialReloader(path, testr.New(t))
	if got := serial(reload); got != a.ID {
		t.Fatalf("first credential %s, want token %s", got, a.ID)
	}
	first, _ := reload()
	if again, _ := reload(); again != first {
		t.Error("an unchanged file was parsed again")
	}
	b := write()
	if got := serial(reload); got != b.ID {
		t.Errorf("after the renewal: credential %s, want token %s", got, b.ID)
	}
	if err := os.WriteFile(path, []byte("not a token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reload(); err == nil {
		t.Error("a damaged credential was taken")
	}
}
