package app

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiff-io/skiff/sidecar/sitefile"
	"github.com/skiff-io/skiff/sidecar/token"
)

// credentialsSite makes the site description of a sidecar that has no
// site file: its site and its one link (to the site's gateway) come from
// the token in dir. The data dir, where a redeemed token is remembered,
// is a directory under the system's temporary directory when it can be
// made; a sidecar on a read-only root needs a token that has not expired.
func credentialsSite(dir string) (*sitefile.Site, error) {
	path := filepath.Join(dir, "token.yaml")
	tok, err := token.Load(path)
	if err != nil {
		return nil, fmt.Errorf("--credentials-dir: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("--credentials-dir: %w", err)
	}
	data := filepath.Join(os.TempDir(), "skiff-sidecar-"+tok.Site)
	return &sitefile.Site{
		Path:    abs,
		Name:    tok.Site,
		DataDir: data,
		Links:   []sitefile.Link{{Token: abs, Cost: 1, Line: 1}},
	}, nil
}
