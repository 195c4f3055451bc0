package linux_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/cli/app"
	routerapp "github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/test/testutil"
)

// skiffCLI runs the skiff CLI in-process against two Linux sites, each
// with its site file and its gateway's admin address.
type skiffCLI struct {
	t                  *testing.T
	dir                string
	eastFile, westFile string
	east, west         []string // --site-file and --admin of each site
}

// run runs skiff with args; a non-zero exit is an error with its stderr.
func (c *skiffCLI) run(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	if code := app.Main(c.t.Context(), "skiff", args, &out, &errOut); code != 0 {
		return out.String(), fmt.Errorf("exit %d: %s", code, errOut.String())
	}
	return out.String(), nil
}

// on runs skiff with args and then the site flags of site.
func (c *skiffCLI) on(site []string, args ...string) (string, error) {
	return c.run(append(args, site...)...)
}

// The skiff CLI on Linux sites (--site-file, --admin): two gateway
// processes, east and west, unlinked; token create on east and link
// create on west link them (the link comes up in the gateways' views);
// status, network status and link list read each site's gateway view;
// what link create refuses leaves the site file as it was; link delete
// takes the link out of west's site file and its gateway drops it.
func TestSkiffCLIOnLinuxSites(t *testing.T) {
	bin := buildRouter(t)
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	linkPort, eastAdmin, westAdmin, westEcho := port(), port(), port(), port()
	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", westEcho), "--name", "west")
	c := &skiffCLI{t: t, dir: dir, eastFile: filepath.Join(dir, "east.yaml"), westFile: filepath.Join(dir, "west.yaml")}
	write(t, c.eastFile, fmt.Sprintf("name: east\ndataDir: ./east-data\nlinkAccess:\n  bind: 127.0.0.1:%d\n", linkPort))
	write(t, c.westFile, fmt.Sprintf("name: west # the site link create edits\ndataDir: ./west-data\nconnectors:\n  - {address: web, host: 127.0.0.1, port: %d, protocol: http}\nrouting:\n  web: closest\n", westEcho))
	for file, admin := range map[string]int{c.eastFile: eastAdmin, c.westFile: westAdmin} {
		start(t, bin, "gateway", "--site-file", file, "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", admin), "--health-probe-bind-address", "0")
	}
	c.east = []string{"--site-file", c.eastFile, "--admin", fmt.Sprintf("127.0.0.1:%d", eastAdmin)}
	c.west = []string{"--site-file", c.westFile, "--admin", fmt.Sprintf("127.0.0.1:%d", westAdmin)}

	tok := c.linkWestToEast()
	testutil.Eventually(t, 20*time.Second, "east's network status shows west and web", func() error {
		out, err := c.on(c.east, "network", "status")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "east (this site)   0      west (cost 2)") || !strings.Contains(out, "web       http       closest   west (1)") {
			return fmt.Errorf("network status:\n%s", out)
		}
		return nil
	})
	out, err := c.on(c.west, "link", "list")
	if err != nil || !strings.Contains(out, "east   2      up") {
		t.Errorf("west's link list: %v\n%s", err, out)
	}
	out, err = c.on(c.west, "status")
	if err != nil || !strings.Contains(out, "Site west (a Linux site)") || !regexp.MustCompile(`east +2 +up +[0-9]+[smhd] +west`).MatchString(out) || !strings.Contains(out, "web       http       closest   1") ||
		!hasSizes(out, "east   2      up") {
		t.Errorf("west's status: %v\n%s", err, out)
	}
	// --admin of the other site's gateway: refused, not shown as this one.
	if _, err := c.run("status", "--site-file", c.westFile, "--admin", fmt.Sprintf("127.0.0.1:%d", eastAdmin)); err == nil || !strings.Contains(err.Error(), `is site "east"'s, not "west"'s`) {
		t.Errorf("status of west with east's admin address: %v", err)
	}
	if _, err := c.on(c.east, "expose", "service", "web"); err == nil || !strings.Contains(err.Error(), "add a connector") {
		t.Errorf("expose on a Linux site: %v", err)
	}
	c.refusedLinks(tok)
	c.deleteLink()
}

// linkWestToEast makes a token on east and links west with it, at cost
// 2, waiting for the link to come up; it returns the token file.
func (c *skiffCLI) linkWestToEast() string {
	t := c.t
	tok := filepath.Join(c.dir, "west-token.yaml")
	out, err := c.on(c.east, "token", "create", tok, "--expires", "10m")
	if err != nil || !strings.Contains(out, "Token of site east written to "+tok) || !strings.Contains(out, "skiff link create "+tok+" --site-file") {
		t.Fatalf("token create on east: %v\n%s", err, out)
	}
	if fi, err := os.Stat(tok); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi, err)
	}
	out, err = c.on(c.west, "link", "create", tok, "--cost", "2", "--timeout", "20s")
	if err != nil || !strings.Contains(out, "Link link-to-east to site east added to "+c.westFile+" (cost 2") || !strings.Contains(out, "the link is up") {
		t.Fatalf("link create on west: %v\n%s", err, out)
	}
	site := loadSite(t, c.westFile)
	copied := filepath.Join(c.dir, "west-data", "links", "link-to-east.token.yaml")
	if len(site.Links) != 1 || site.Links[0].Token != copied || site.Links[0].Cost != 2 {
		t.Errorf("west's links after link create: %+v, want %s at cost 2", site.Links, copied)
	}
	if fi, err := os.Stat(copied); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token copy: %v, %v; want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(c.westFile); !strings.Contains(string(b), "# the site link create edits") {
		t.Errorf("link create lost the site file's comment:\n%s", b)
	}
	return tok
}

// refusedLinks: east's own token on east, an expired token and a second
// link to east are refused, and the site files stay as they were.
func (c *skiffCLI) refusedLinks(tok string) {
	t := c.t
	before := map[string]string{c.eastFile: readFile(t, c.eastFile), c.westFile: readFile(t, c.westFile)}
	expired := filepath.Join(c.dir, "expired-token.yaml")
	if _, err := routerapp.IssueToken(routerapp.TokenOptions{SiteFile: c.eastFile, Out: expired, Expires: time.Minute, Redemptions: 1}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(c.dir, "second-token.yaml")
	if _, err := c.on(c.east, "token", "create", second); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		site       []string
		file, want string
	}{
		{c.east, tok, "is this site's own (east)"},
		{c.west, expired, "the token of site east expired at"},
		{c.west, second, "links to site east already"},
	} {
		if _, err := c.on(tc.site, "link", "create", tc.file, "--name", "again"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("link create %s: %v, want an error with %q", filepath.Base(tc.file), err, tc.want)
		}
	}
	if _, err := c.on(c.west, "link", "delete", "north"); err == nil || !strings.Contains(err.Error(), "has no link north") {
		t.Errorf("link delete north: %v", err)
	}
	for file, b := range before {
		if now := readFile(t, file); now != b {
			t.Errorf("a refused command changed %s:\n%s\nwas:\n%s", file, now, b)
		}
	}
	if _, err := os.Stat(filepath.Join(c.dir, "west-data", "links", "again.token.yaml")); err == nil {
		t.Errorf("a refused link create left its token copy")
	}
}

// deleteLink deletes west's link to east: it leaves the site file and
// link list, and west's gateway drops it.
func (c *skiffCLI) deleteLink() {
	t := c.t
	out, err := c.on(c.west, "link", "delete", "east")
	if err != nil || !strings.Contains(out, "Deleted the link to site east from "+c.westFile+", and its token copy") {
		t.Fatalf("link delete east: %v\n%s", err, out)
	}
	if site := loadSite(t, c.westFile); len(site.Links) != 0 {
		t.Errorf("west's links after link delete: %+v", site.Links)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "west-data", "links", "link-to-east.token.yaml")); err == nil {
		t.Errorf("link delete left the token copy")
	}
	if out, err := c.on(c.west, "link", "list"); err != nil || !strings.Contains(out, "No links") {
		t.Errorf("west's link list after link delete: %v\n%s", err, out)
	}
	testutil.Eventually(t, 10*time.Second, "west's network status no longer shows the link", func() error {
		out, err := c.on(c.west, "network", "status")
		if err != nil || strings.Contains(out, "(cost 2)") {
			return fmt.Errorf("network status: %v\n%s", err, out)
		}
		return nil
	})
}

func loadSite(t *testing.T, path string) *sitefile.Site {
	t.Helper()
	site, err := sitefile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return site
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hasSizes says whether the line of out that begins with prefix ends with
// two byte counts (the link's sent and received columns).
func hasSizes(out, prefix string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if strings.HasPrefix(line, prefix) && len(f) >= 4 && strings.HasSuffix(f[len(f)-1], "B") && strings.HasSuffix(f[len(f)-3], "B") {
			return true
		}
	}
	return false
}
