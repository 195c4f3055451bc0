package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
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

// TestServicesMulticast checks that an address routed multicast carries
// the mode and deadline its entries name, and one that names none the
// zero value (the defaults).
func TestServicesMulticast(t *testing.T) {
	site := load(t, `name: east
listeners:
  - {address: web, host: 127.0.0.1, port: 18080, protocol: http, multicast: events}
  - {address: feed, host: 127.0.0.1, port: 18081, protocol: http2}
connectors:
  - {address: web, host: 127.0.0.1, port: 9090, multicastTimeout: 2s}
routing:
  web: multicast
  feed: multicast
`)
	got, err := Services(site)
	if err != nil {
		t.Fatal(err)
	}
	want := []model.Service{
		{Address: "web", Port: 18080, Network: "web", Protocol: model.HTTP, Routing: model.Multicast,
			Multicast: model.MulticastSpec{Mode: model.Events, Timeout: 2 * time.Second}, Gateway: "127.0.0.1:18080", VIPs: []string{"127.0.0.1"},
			Endpoints: []model.Endpoint{{IP: "127.0.0.1", Port: 9090, Ready: true, Name: "127.0.0.1:9090"}}},
		{Address: "feed", Port: 18081, Network: "feed", Protocol: model.HTTP2, Routing: model.Multicast, Gateway: "127.0.0.1:18081", VIPs: []string{"127.0.0.1"}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Services (-got +want):\n%s", diff)
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

// TestWatchKeepsLastGood checks that a site file changed to a routing
// pattern the data plane cannot serve is refused with model.CheckRouting's
// words, and that the last good services stay.
func TestWatchKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "east.yaml")
	write := func(body string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil { // a change Watch sees, however coarse the clock
			t.Fatal(err)
		}
	}
	const good = "name: east\nconnectors:\n  - {address: echo, host: 127.0.0.1, port: 9090}\nrouting:\n  echo: closest\n"
	write(good, time.Now().Add(-time.Hour))

	var mu sync.Mutex
	var logged []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, args)
	}, funcr.Options{})
	updates := make(chan []model.Service, 4)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, log, func(s []model.Service) { updates <- s })
	}()
	defer func() { cancel(); <-done }()

	select {
	case got := <-updates:
		if len(got) != 1 || got[0].Routing != model.Closest {
			t.Fatalf("first services %+v, want echo routed closest", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no services from the good file")
	}

	write(strings.Replace(good, "closest", "multicast", 1), time.Now())
	words := model.CheckRouting(model.TCP, model.Multicast).Error()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		found := strings.Contains(strings.Join(logged, "\n"), words)
		mu.Unlock()
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log with %q; logged:\n%s", words, strings.Join(logged, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case got := <-updates:
		t.Errorf("services %+v from a refused file", got)
	default:
	}
}
