package sitefile

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestLoadGood(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	want := &Site{
		Path:       filepath.Join(dir, "good.yaml"),
		Name:       "east",
		DataDir:    filepath.Join(dir, "east-data"),
		CADir:      filepath.Join(dir, "east-data"),
		LinkAccess: &LinkAccess{Bind: "0.0.0.0:55671", Advertise: "east.example.com:55671"},
		Links: []Link{
			{Token: filepath.Join(dir, "west-token.yaml"), Cost: 1, Line: 8},
			{Token: "/etc/skiff/north-token.yaml", Cost: 5, Line: 10,
				Policy: policy.Policy{Advertise: []string{"db-*", "backend:8080"}, Reach: []string{"echo"}}},
			{Token: filepath.Join(dir, "tokens", "south-token.yaml"), Cost: 1, Line: 16},
		},
		Listeners: []Listener{
			{Address: "echo", Host: "127.0.0.1", Port: 18080, AccessLog: true, Line: 18},
			{Address: "db.prod", Host: "::1", Port: 5432, Line: 19},
		},
		Connectors: []Connector{
			{Address: "echo", Host: "127.0.0.1", Port: 9090, Line: 23},
			{Address: "echo", Host: "localhost", Port: 9091, Line: 24},
			{Address: "db.prod", Host: "127.0.0.1", Port: 9090, Line: 25},
		},
		Routing: map[string]string{"echo": "closest", "db.prod": "balanced"},
	}
	want.Modified = ModTime(filepath.Join("testdata", "good.yaml"))
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Load(testdata/good.yaml) (-got +want):\n%s", diff)
	}
	for addr, wantPattern := range map[string]model.Pattern{"echo": model.Closest, "db.prod": model.Balanced, "other": model.Balanced} {
		if p := got.RoutingFor(addr); p != wantPattern {
			t.Errorf("RoutingFor(%q) = %q, want %q", addr, p, wantPattern)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "west.yaml")
	tests := []struct {
		name string
		yaml string
		want *Site
	}{
		{
			name: "name only",
			yaml: "name: west\n",
			want: &Site{Path: path, Name: "west", DataDir: filepath.Join(dir, "west-data"), CADir: filepath.Join(dir, "west-data")},
		},
		{
			name: "advertise defaults to bind, cost to 1",
			yaml: "name: west\nlinkAccess:\n  bind: 127.0.0.1:55671\nlinks:\n  - token: t.yaml\n",
			want: &Site{
				Path: path, Name: "west", DataDir: filepath.Join(dir, "west-data"), CADir: filepath.Join(dir, "west-data"),
				LinkAccess: &LinkAccess{Bind: "127.0.0.1:55671", Advertise: "127.0.0.1:55671"},
				Links:      []Link{{Token: filepath.Join(dir, "t.yaml"), Cost: 1, Line: 5}},
			},
		},
		{
			name: "absolute data dir, empty sections",
			yaml: "name: west\ndataDir: /var/lib/skiff//west/\nlinkAccess:\nlinks: []\nlisteners:\nconnectors: null\nrouting: {}\n",
			want: &Site{Path: path, Name: "west", DataDir: "/var/lib/skiff/west", CADir: "/var/lib/skiff/west", Links: []Link(nil), Routing: map[string]string{}},
		},
		{
			name: "anchors and aliases",
			yaml: "name: west\nlisteners:\n  - &l {address: echo, host: 127.0.0.1, port: 80}\nconnectors:\n  - *l\n",
			want: &Site{
				Path: path, Name: "west", DataDir: filepath.Join(dir, "west-data"), CADir: filepath.Join(dir, "west-data"),
				Listeners:  []Listener{{Address: "echo", Host: "127.0.0.1", Port: 80, Line: 3}},
				Connectors: []Connector{{Address: "echo", Host: "127.0.0.1", Port: 80, Line: 3}},
			},
		},
		{
			name: "allow lists; an empty allow is no policy",
			yaml: "name: west\nlinks:\n  - token: a.yaml\n    allow: {reach: ['*']}\n  - token: b.yaml\n    allow:\n  - token: c.yaml\n    allow: {}\n",
			want: &Site{
				Path: path, Name: "west", DataDir: filepath.Join(dir, "west-data"), CADir: filepath.Join(dir, "west-data"),
				Links: []Link{
					{Token: filepath.Join(dir, "a.yaml"), Cost: 1, Line: 3, Policy: policy.Policy{Reach: []string{"*"}}},
					{Token: filepath.Join(dir, "b.yaml"), Cost: 1, Line: 5},
					{Token: filepath.Join(dir, "c.yaml"), Cost: 1, Line: 7},
				},
			},
		},
		{
			name: "routing patterns read by model.ParsePattern, kept by their names",
			yaml: "name: west\nrouting:\n  echo: Closest\n  db: ''\n",
			want: &Site{
				Path: path, Name: "west", DataDir: filepath.Join(dir, "west-data"), CADir: filepath.Join(dir, "west-data"),
				Routing: map[string]string{"echo": "closest", "db": "balanced"},
			},
		},
		{
			name: "listeners' accessLog: true, false, null, absent (false)",
			yaml: "name: west\nlisteners:\n  - {address: web, host: 127.0.0.1, port: 80, protocol: http, accessLog: true}\n" +
				"  - {address: web, host: 127.0.0.1, port: 81, accessLog: false}\n  - {address: web, host: 127.0.0.1, port: 82, accessLog: True}\n" +
				"  - {address: web, host: 127.0.0.1, port: 83, accessLog: null}\n  - {address: web, host: 127.0.0.1, port: 84}\n",
			want: &Site{
				Path: path, Name: "west", DataDir: filepath.Join(dir, "west-data"), CADir: filepath.Join(dir, "west-data"),
				Listeners: []Listener{
					{Address: "web", Host: "127.0.0.1", Port: 80, Protocol: model.HTTP, AccessLog: true, Line: 3},
					{Address: "web", Host: "127.0.0.1", Port: 81, Line: 4},
					{Address: "web", Host: "127.0.0.1", Port: 82, AccessLog: true, Line: 5},
					{Address: "web", Host: "127.0.0.1", Port: 83, Line: 6},
					{Address: "web", Host: "127.0.0.1", Port: 84, Line: 7},
				},
				Protocols: map[string]model.Protocol{"web": model.HTTP},
			},
		},
		{
			name: "CA kept apart (Kubernetes: the controller's Secret)",
			yaml: "name: west\ndataDir: /var/lib/skiff\ncaDir: /etc/skiff/site\n",
			want: &Site{Path: path, Name: "west", DataDir: "/var/lib/skiff", CADir: "/etc/skiff/site"},
		},
		{
			name: "bind on all interfaces with an advertised address",
			yaml: "name: west\nlinkAccess:\n  bind: :55671\n  advertise: '[2001:db8::1]:55671'\n",
			want: &Site{
				Path: path, Name: "west", DataDir: filepath.Join(dir, "west-data"), CADir: filepath.Join(dir, "west-data"),
				LinkAccess: &LinkAccess{Bind: ":55671", Advertise: "[2001:db8::1]:55671"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(path, []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Parse() (-got +want):\n%s", diff)
			}
		})
	}
}

// TestParseBad golden-tests the messages for every bad file in
// testdata/bad: each NAME.yaml has its expected error in NAME.golden.
// Run with -update to rewrite them, then review the diff.
func TestParseBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/bad/*.yaml")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			site, err := Parse(file, data)
			if err == nil {
				t.Fatalf("Parse() = %+v, want an error", site)
			}
			for _, e := range leaves(err) {
				var se *Error
				if !errors.As(e, &se) {
					t.Errorf("error %q (%T) is not a *sitefile.Error", e, e)
				} else if se.File != file {
					t.Errorf("error %q names file %q, want %q", e, se.File, file)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(got, string(want)); diff != "" {
				t.Errorf("Parse(%s) error (-got +want):\n%s", file, diff)
			}
		})
	}
}

// TestRoutingRefusedWithValidatorWords checks that a routing pattern the
// data plane cannot serve is refused with model.CheckRouting's words (a
// site file's addresses are TCP), the ones every source uses.
func TestRoutingRefusedWithValidatorWords(t *testing.T) {
	for _, pattern := range []string{"multicast", "fastest"} {
		t.Run(pattern, func(t *testing.T) {
			_, err := Parse("east.yaml", []byte("name: east\nrouting:\n  echo: "+pattern+"\n"))
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Parse() error = %v, want a *sitefile.Error", err)
			}
			want := model.CheckRouting(model.TCP, model.Pattern(pattern))
			if want == nil {
				t.Fatalf("model.CheckRouting(tcp, %s) = nil", pattern)
			}
			if got := (Error{File: "east.yaml", Line: 3, Field: "routing.echo", Msg: want.Error()}); *se != got {
				t.Errorf("error %+v, want %+v", *se, got)
			}
		})
	}
}

// leaves returns the errors joined in err, or err itself.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestErrorFields(t *testing.T) {
	_, err := Parse("east.yaml", []byte("name: east\nlinks:\n  - token: a.yaml\n    cost: 0\n"))
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("Parse() error = %v (%T), want a *Error", err, err)
	}
	want := &Error{File: "east.yaml", Line: 4, Field: "links[0].cost", Msg: "must be >= 1, got 0"}
	if diff := cmp.Diff(se, want); diff != "" {
		t.Errorf("error (-got +want):\n%s", diff)
	}
	if got, want := err.Error(), "east.yaml:4: links[0].cost: must be >= 1, got 0"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Field: "name", Msg: "bad"}, "a.yaml:3: name: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Error{File: "a.yaml", Field: "name", Msg: "bad"}, "a.yaml: name: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load() error = %v, want fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load() error %q does not name the file", err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, file := range append(files, bad...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		site, err := Parse("fuzz.yaml", data)
		if err != nil {
			if site != nil {
				t.Errorf("Parse() returned a site and an error %v", err)
			}
			for _, e := range leaves(err) {
				var se *Error
				if !errors.As(e, &se) {
					t.Errorf("error %q (%T) is not a *sitefile.Error", e, e)
				}
			}
			return
		}
		if checkLabel(site.Name) != "" || !filepath.IsAbs(site.DataDir) {
			t.Errorf("accepted site with name %q, dataDir %q", site.Name, site.DataDir)
		}
		for _, l := range site.Listeners {
			if l.Port < 1 || l.Port > 65535 || checkAddress(l.Address) != "" {
				t.Errorf("accepted listener %+v", l)
			}
		}
		for _, l := range site.Links {
			if l.Cost < 1 || !filepath.IsAbs(l.Token) {
				t.Errorf("accepted link %+v", l)
			}
			if err := l.Policy.Validate(); err != nil {
				t.Errorf("accepted link %+v with a bad policy: %v", l, err)
			}
		}
		for a, p := range site.Routing {
			if err := model.CheckRouting(site.ProtocolFor(a), model.Pattern(p)); err != nil || p == "" {
				t.Errorf("accepted routing %s: %q (%s): %v", a, p, site.ProtocolFor(a), err)
			}
		}
		for a, m := range site.Multicast {
			if site.RoutingFor(a) != model.Multicast || m.Mode == "" || m.Timeout < time.Millisecond || m.Timeout > model.MaxMulticastTimeout {
				t.Errorf("accepted multicast %s: %+v, routed %s", a, m, site.RoutingFor(a))
			}
		}
	})
}

// An address's protocol is the one any of its listeners and connectors
// names; routing is checked against it; an address none names is TCP.
func TestProtocols(t *testing.T) {
	s, err := Parse("/sites/east.yaml", []byte(`name: east
listeners:
  - {address: web, host: 127.0.0.1, port: 8080}
  - {address: api, host: 127.0.0.1, port: 9000, protocol: GRPC}
connectors:
  - {address: web, host: 10.0.0.1, port: 80, protocol: http}
  - {address: db, host: 10.0.0.2, port: 5432}
routing:
  web: closest
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]model.Protocol{"web": model.HTTP, "api": model.GRPC}
	if diff := cmp.Diff(s.Protocols, want); diff != "" {
		t.Errorf("Protocols (-got +want):\n%s", diff)
	}
	for address, p := range map[string]model.Protocol{"web": model.HTTP, "api": model.GRPC, "db": model.TCP, "none": model.TCP} {
		if got := s.ProtocolFor(address); got != p {
			t.Errorf("ProtocolFor(%s) = %s, want %s", address, got, p)
		}
	}
	if s.Listeners[0].Protocol != "" || s.Connectors[0].Protocol != model.HTTP {
		t.Errorf("entries' own protocols: listener %q, connector %q", s.Listeners[0].Protocol, s.Connectors[0].Protocol)
	}
}

// An address routed multicast takes the multicast mode and deadline its
// listeners and connectors name (one entry naming each is enough), the
// defaults for the one they leave out; one they name neither of is not
// in Site.Multicast, and MulticastFor gives it the zero value.
func TestMulticast(t *testing.T) {
	s, err := Parse("/sites/east.yaml", []byte(`name: east
listeners:
  - {address: web, host: 127.0.0.1, port: 8080, protocol: http, multicast: Events}
  - {address: feed, host: 127.0.0.1, port: 8081, protocol: http2, multicastTimeout: 1m30s}
  - {address: news, host: 127.0.0.1, port: 8082, protocol: http, multicast: null, multicastTimeout: null}
connectors:
  - {address: web, host: 10.0.0.1, port: 80, multicastTimeout: 2s}
  - {address: web, host: 10.0.0.2, port: 80, multicast: events, multicastTimeout: 2000ms}
routing:
  web: multicast
  feed: Multicast
  news: multicast
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]model.MulticastSpec{
		"web":  {Mode: model.Events, Timeout: 2 * time.Second},
		"feed": {Mode: model.Aggregate, Timeout: 90 * time.Second},
	}
	if diff := cmp.Diff(s.Multicast, want); diff != "" {
		t.Errorf("Multicast (-got +want):\n%s", diff)
	}
	for address, m := range map[string]model.MulticastSpec{"web": want["web"], "feed": want["feed"], "news": {}, "none": {}} {
		if got := s.MulticastFor(address); got != m {
			t.Errorf("MulticastFor(%s) = %+v, want %+v", address, got, m)
		}
	}
	if diff := cmp.Diff(s.Routing, map[string]string{"web": "multicast", "feed": "multicast", "news": "multicast"}); diff != "" {
		t.Errorf("Routing (-got +want):\n%s", diff)
	}
	if l, c := s.Listeners[0], s.Connectors[0]; l.Multicast != model.Events || l.MulticastTimeout != 0 || c.Multicast != "" || c.MulticastTimeout != 2*time.Second {
		t.Errorf("entries' own multicast: listener %q %v, connector %q %v", l.Multicast, l.MulticastTimeout, c.Multicast, c.MulticastTimeout)
	}
}
