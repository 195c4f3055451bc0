package app

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
)

// --access-log makes a sidecar log its pod's requests to stdout; a
// gateway's site-file listeners choose with accessLog, and the flag does
// not change them.
func TestAccessLogOptions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "east.yaml")
	site, err := sitefile.Parse(path, []byte("name: east\nlisteners:\n"+
		"  - {address: web, host: 127.0.0.1, port: 8080, protocol: http, accessLog: true}\n"+
		"  - {address: api, host: 127.0.0.1, port: 8081}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		role      router.Role
		args      []string
		sidecar   bool // SidecarAccessLog
		hasWriter bool
	}{
		{router.RoleSidecar, nil, false, false},
		{router.RoleSidecar, []string{"--access-log"}, true, true},
		{router.RoleGateway, nil, false, true},
		{router.RoleGateway, []string{"--access-log=true"}, false, true},
	} {
		fs := flag.NewFlagSet(tc.role.String(), flag.ContinueOnError)
		var o ServeOptions
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := serveConfig(o, site, tc.role, nil, prometheus.NewRegistry(), testr.New(t))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.SidecarAccessLog != tc.sidecar || (cfg.AccessLog != nil) != tc.hasWriter || (tc.hasWriter && cfg.AccessLog != os.Stdout) {
			t.Errorf("%s %q: SidecarAccessLog %v, AccessLog %v; want %v, stdout %v", tc.role, tc.args, cfg.SidecarAccessLog, cfg.AccessLog, tc.sidecar, tc.hasWriter)
		}
		if got := cfg.Services.Listeners; len(got) != 2 || !got[0].AccessLog || got[1].AccessLog {
			t.Errorf("%s: listeners %+v; want web's access log on, api's off", tc.role, got)
		}
	}
}
