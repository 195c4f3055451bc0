package app_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/cli/app"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/datadir"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
)

// linuxSites are site files in a temporary dir: west, which links, and
// east and north, which issue tokens. No gateway runs: --admin answers
// nothing (the gateways' side is test/linux's TestSkiffCLIOnLinuxSites).
type linuxSites struct {
	t   *testing.T
	dir string
}

func newLinuxSites(t *testing.T, west string) *linuxSites {
	s := &linuxSites{t: t, dir: t.TempDir()}
	for name, content := range map[string]string{
		"east.yaml":  "name: east\nlinkAccess:\n  bind: 127.0.0.1:55671\n",
		"north.yaml": "name: north\nlinkAccess:\n  bind: 127.0.0.1:55672\n",
		"west.yaml":  west,
	} {
		must(t, os.WriteFile(s.path(name), []byte(content), 0o600))
	}
	return s
}

func (s *linuxSites) path(name string) string { return filepath.Join(s.dir, name) }

// issue writes a token of site to file, issued at now.
func (s *linuxSites) issue(site, file string, member bool, now time.Time) string {
	_, err := datadir.IssueToken(datadir.TokenOptions{SiteFile: s.path(site + ".yaml"), Out: s.path(file), Expires: time.Minute, Redemptions: 1, Member: member}, now)
	must(s.t, err)
	return s.path(file)
}

// west runs skiff on west, whose gateway does not answer.
func (s *linuxSites) west(args ...string) (string, error) { return s.on("west", args...) }

// on runs skiff on site; no gateway answers.
func (s *linuxSites) on(site string, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	args = append(args, "--site-file", s.path(site+".yaml"), "--admin", "127.0.0.1:1")
	if code := app.Main(context.Background(), "skiff", args, &out, &errOut); code != 0 {
		return out.String(), fmt.Errorf("exit %d: %s", code, errOut.String())
	}
	return out.String(), nil
}

// secretFile writes the token in file into a token request Secret
// manifest named name, as `skiff token create` writes on a Kubernetes
// site, and returns its path.
func (s *linuxSites) secretFile(file, name string) string {
	data, err := os.ReadFile(file)
	must(s.t, err)
	b, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": name, "labels": map[string]string{contract.TypeLabel: "token-request"}},
		"data":     map[string][]byte{contract.TokenKey: data}})
	must(s.t, err)
	path := file + ".secret.yaml"
	must(s.t, os.WriteFile(path, b, 0o600))
	return path
}

// A Linux site links with a token Secret of a Kubernetes site's as with
// a LinkToken: the link is named after the Secret, its token copied into
// the data dir. A gateway that does not answer is no error.
func TestLinuxLinkCreateSecret(t *testing.T) {
	s := newLinuxSites(t, "name: west # keep me\n")
	manifest := s.secretFile(s.issue("north", "north-token.yaml", false, time.Now()), "link-to-north")
	out, err := s.west("link", "create", manifest, "--cost", "4")
	must(t, err)
	if !strings.Contains(out, "Link link-to-north to site north added to") || !strings.Contains(out, "whether the link is up could not be read") {
		t.Errorf("link create says %q", out)
	}
	site, err := sitefile.Load(s.path("west.yaml"))
	must(t, err)
	copied := filepath.Join(s.dir, "west-data", "links", "link-to-north.token.yaml")
	if len(site.Links) != 1 || site.Links[0].Token != copied || site.Links[0].Cost != 4 {
		t.Errorf("west's links: %+v, want %s at cost 4", site.Links, copied)
	}
	if b, _ := os.ReadFile(s.path("west.yaml")); !strings.Contains(string(b), "token: west-data/links/link-to-north.token.yaml") || !strings.Contains(string(b), "# keep me") {
		t.Errorf("west.yaml after link create:\n%s", b)
	}
}

// What link create refuses leaves west's site file and data dir as they
// were.
func TestLinuxLinkCreateRefused(t *testing.T) {
	const west = "name: west\n"
	s := newLinuxSites(t, west)
	tampered := s.issue("east", "tampered.yaml", false, time.Now())
	b, err := os.ReadFile(tampered)
	must(t, err)
	must(t, os.WriteFile(tampered, bytes.Replace(b, []byte("redemptions: 1"), []byte("redemptions: 9"), 1), 0o600))
	must(t, os.WriteFile(s.path("big.yaml"), make([]byte, 1<<20+1), 0o600))
	must(t, os.WriteFile(s.path("pod.yaml"), []byte("kind: Pod\n"), 0o600))
	for _, tc := range []struct {
		name, site string
		args       []string
		want       string
	}{
		{"member token", "west", []string{s.issue("east", "member.yaml", true, time.Now())}, "is a member token, for site east's own sidecars"},
		{"tampered", "west", []string{tampered}, "token tampered with"},
		{"expired", "west", []string{s.issue("east", "old.yaml", false, time.Now().Add(-time.Hour))}, "the token of site east expired at"},
		{"own", "east", []string{s.issue("east", "own.yaml", false, time.Now())}, "is this site's own (east)"},
		{"too big", "west", []string{s.path("big.yaml")}, "is over 1048576 bytes"},
		{"not a token", "west", []string{s.path("pod.yaml")}, `holds a "Pod", not a Secret or a LinkToken`},
		{"bad name", "west", []string{s.issue("east", "named.yaml", false, time.Now()), "--name", "Link_1"}, `link name "Link_1"`},
		{"bad cost", "west", []string{s.issue("east", "cost.yaml", false, time.Now()), "--cost", "0"}, "--cost 0: want a whole number from 1 to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.on(tc.site, append([]string{"link", "create"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("link create: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(s.path("west.yaml")); string(b) != west {
		t.Errorf("refused link creates changed west.yaml to %q", b)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "west-data")); err == nil {
		t.Errorf("refused link creates left west's data dir")
	}
	if _, err := s.on("east", "token", "create", s.path("t.yaml"), "--name", "x"); err == nil || !strings.Contains(err.Error(), "--name names a Kubernetes site's token request") {
		t.Errorf("token create --name on a Linux site: %v", err)
	}
}

// link delete finds a link by its token file too; a token file outside
// the data dir is the user's and stays; a peer that two links name is
// refused, and the site file stays as it was.
func TestLinuxLinkDelete(t *testing.T) {
	s := newLinuxSites(t, "")
	east1 := s.issue("east", "east-1.yaml", false, time.Now())
	east2 := s.issue("east", "east-2.yaml", false, time.Now())
	north := s.issue("north", "north.yaml", false, time.Now())
	west := "name: west\nlinks:\n  - token: east-1.yaml # first\n  - token: east-2.yaml\n  - {token: north.yaml, cost: 2}\n"
	must(t, os.WriteFile(s.path("west.yaml"), []byte(west), 0o600))
	if _, err := s.west("link", "delete", "east"); err == nil || !strings.Contains(err.Error(), "has 2 links to site east") {
		t.Errorf("link delete of a peer two links name: %v", err)
	}
	if b, _ := os.ReadFile(s.path("west.yaml")); string(b) != west {
		t.Errorf("a refused link delete changed west.yaml to %q", b)
	}
	out, err := s.west("link", "delete", east1)
	must(t, err)
	if out != "Deleted the link to site east from "+s.path("west.yaml")+".\nIts gateway reloads the site file by itself and closes the link.\n" {
		t.Errorf("link delete says %q", out)
	}
	_, err = s.west("link", "delete", "north")
	must(t, err)
	site, err := sitefile.Load(s.path("west.yaml"))
	must(t, err)
	if len(site.Links) != 1 || site.Links[0].Token != east2 {
		t.Errorf("west's links: %+v, want %s alone", site.Links, east2)
	}
	for _, f := range []string{east1, north} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("link delete removed a token file outside the data dir: %v", err)
		}
	}
}
