package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/sitefile"
	"github.com/skiff-io/skiff/xds/model"
)

func load(t *testing.T, body string) *sitefile.Site {
	t.Helper()
	p := filepath.Join(t.TempDir(), "east.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := sitefile.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServices(t *testing.T) {
	site := load(t, `name: east
listeners:
  - {address: echo, host: 127.0.0.1, port: 18080}
  - {address: backend:8080, host: 0.0.0.0, port: 28080}
connectors:
  - {address: echo, host: 127.0.0.1, port: 9090}
  - {address: echo, host: localhost, port: 9091}
  - {address: db, host: 127.0.0.2, port: 5432}
routing:
  echo: closest
`)
	got, err := Services(site)
	if err != nil {
		t.Fatal(err)
	}
	localhost := got[0].Endpoints[1].IP // resolved by the system
	want := []model.Service{
		{Address: "echo", Port: 18080, Network: "echo", Protocol: model.TCP, Routing: model.Closest, Gateway: "127.0.0.1:18080", VIPs: []string{"127.0.0.1"},
			Endpoints: []model.Endpoint{{IP: "127.0.0.1", Port: 9090, Ready: true, Name: "127.0.0.1:9090"}, {IP: localhost, Port: 9091, Ready: true, Name: "localhost:9091"}}},
		{Address: "backend", Port: 8080, Network: "backend:8080", Protocol: model.TCP, Routing: model.Balanced, Gateway: "0.0.0.0:28080"},
		{Address: "db", Port: 5432, Network: "db", Protocol: model.TCP, Routing: model.Balanced,
			Endpoints: []model.Endpoint{{IP: "127.0.0.2", Port: 5432, Ready: true, Name: "127.0.0.2:5432"}}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Services (-got +want):\n%s", diff)
	}
	tb := &model.Table{Site: "east", Services: got}
	if err := tb.Validate(); err != nil {
		t.Errorf("services do not validate: %v", err)
	}
}

func TestServicesTwoListeners(t *testing.T) {
	site := load(t, `name: east
listeners:
  - {address: echo, host: 127.0.0.1, port: 18080}
  - {address: echo, host: 127.0.0.1, port: 18081}
`)
	_, err := Services(site)
	if err == nil || !strings.Contains(err.Error(), `address "echo" has two listeners`) || !strings.Contains(err.Error(), "east.yaml:4") {
		t.Fatalf("error %v", err)
	}
}
