package app

import (
	"fmt"
	"path/filepath"

	"github.com/skiff-io/skiff/sidecar/sitefile"
	"github.com/skiff-io/skiff/sidecar/token"
)

// credentialsSite makes the site description of a sidecar that has no
// site file: its site and its one link (to the site's gateway) come from
// the token in dir. It has no data dir (a sidecar runs on a read-only
// root), so its token must not have expired: the controller renews it.
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
	return &sitefile.Site{
		Path:  abs,
		Name:  tok.Site,
		Links: []sitefile.Link{{Token: abs, Cost: 1, Line: 1}},
	}, nil
}
