package app

import (
	"fmt"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
)

// xdsTLS returns how a router proves to its site's controller that it
// belongs to the site (docs/xds.md, "Who may connect"):
//
//   - a gateway issues itself a short-lived client certificate from the
//     site CA in its caDir (on Kubernetes, the CA of the Secret skiff-site);
//   - a sidecar presents its member token's certificate: the token of
//     --credentials-dir (the Secret skiff-sidecar), or the first link
//     token of its site file that its own site issued.
//
// Both verify the controller's certificate against the site CA, for
// xdsclient.ServerName(site).
func xdsTLS(site *sitefile.Site, role router.Role, nodeID string) (xdsclient.TLSLoader, error) {
	if role == router.RoleGateway {
		return xdsclient.CATLS(site.CADir, site.Name, nodeID), nil
	}
	for _, l := range site.Links {
		tok, err := token.Load(l.Token)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: link token: %w", site.Path, l.Line, err)
		}
		if tok.Site == site.Name {
			return xdsclient.TokenTLS(l.Token, site.Name), nil
		}
	}
	return nil, fmt.Errorf("%s: no link token of site %s to authenticate to the controller with: a sidecar needs a token its gateway issued", site.Path, site.Name)
}
