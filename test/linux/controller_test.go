package linux_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds" // the xds:/// resolver, as any gRPC application imports it

	"github.com/skiff-io/skiff/test/testutil"
)

// A controller-managed Linux site: skiff-controller reads east's site file
// and follows east's gateway's view; the gateway takes its listeners,
// connectors and routing from the controller over xDS. West is a
// standalone gateway. Checked: traffic crosses, a routing change in the
// site file reaches the gateway, an unmodified grpc-go xDS client resolves
// xds:///hello:PORT from the controller and calls a gRPC server in west,
// and killing the controller under traffic loses nothing; its restart
// costs one reconnect per client.
func TestControllerManagedSite(t *testing.T) {
	bin := buildRouter(t)
	ctl := filepath.Join(filepath.Dir(bin), "skiff-controller")
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	linkPort, echoListen, helloListen := port(), port(), port()
	eastEcho, westEcho := port(), port()
	gwAdmin, xdsPort, ctlAdmin, plainXDS := port(), port(), port(), port()

	// west: a gRPC server (grpc-go's health service) and an echo server.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("west", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", westEcho), "--name", "west")
	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", eastEcho), "--name", "east")

	eastFile := filepath.Join(dir, "east.yaml")
	eastSite := func(routing string) string {
		return fmt.Sprintf(`name: east
dataDir: ./east-data
linkAccess:
  bind: 127.0.0.1:%d
listeners:
  - {address: echo, host: 127.0.0.1, port: %d, protocol: http}
  - {address: hello, host: 127.0.0.1, port: %d}
connectors:
  - {address: echo, host: 127.0.0.1, port: %d, protocol: http}
routing:
  echo: %s
`, linkPort, echoListen, helloListen, eastEcho, routing)
	}
	write(t, eastFile, eastSite("balanced"))
	if out, err := runCmd(bin, "token", "issue", "--site-file", eastFile, "--out", filepath.Join(dir, "west-token.yaml")); err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	write(t, filepath.Join(dir, "west.yaml"), fmt.Sprintf(`name: west
dataDir: ./west-data
links:
  - token: west-token.yaml
connectors:
  - {address: echo, host: 127.0.0.1, port: %d, protocol: http}
  - {address: hello, host: 127.0.0.1, port: %d}
`, westEcho, lis.Addr().(*net.TCPAddr).Port))

	// --access-log: the gateway logs the requests of the listeners the
	// controller gives it (as the chart's gateway.accessLog does).
	var accessLog syncBuffer
	gwCmd := exec.Command(bin, "gateway", "--site-file", eastFile, "--controller", fmt.Sprintf("127.0.0.1:%d", xdsPort),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", gwAdmin), "--health-probe-bind-address", "0", "--access-log")
	gwCmd.Stdout = &accessLog
	gw := testutil.Start(t, gwCmd)
	ctlArgs := []string{"--site-file", eastFile, "--gateway-admin", fmt.Sprintf("127.0.0.1:%d", gwAdmin),
		"--xds-bind-address", fmt.Sprintf("127.0.0.1:%d", xdsPort), "--xds-plaintext-bind-address", fmt.Sprintf("127.0.0.1:%d", plainXDS),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ctlAdmin), "--health-probe-bind-address", "0"}
	controller := start(t, ctl, ctlArgs...)
	start(t, bin, "gateway", "--site-file", filepath.Join(dir, "west.yaml"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0")

	echoURL := fmt.Sprintf("http://127.0.0.1:%d/", echoListen)
	testutil.Eventually(t, 20*time.Second, "both sites answer through east's controller-made listener", func() error {
		got := tally(echoURL, 20)
		if got["east"] == 0 || got["west"] == 0 {
			return fmt.Errorf("balanced answers %v", got)
		}
		return nil
	})

	// A routing change in the site file reaches the gateway through the
	// controller: closest keeps everything in east.
	write(t, eastFile, eastSite("closest"))
	testutil.Eventually(t, 20*time.Second, "closest keeps requests in east", func() error {
		if got := tally(echoURL, 20); got["east"] != 20 {
			return fmt.Errorf("closest answers %v", got)
		}
		return nil
	})

	// An unmodified grpc-go client resolves the service from the
	// controller and reaches west through east's gateway. It has no
	// certificate: it uses the plaintext loopback listener.
	bootstrap := fmt.Sprintf(`{"xds_servers":[{"server_uri":"127.0.0.1:%d","channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":"grpc-interop-client"}}`, plainXDS)
	// grpc reads GRPC_XDS_BOOTSTRAP_CONFIG when the process starts; a test
	// passes the same bootstrap through grpc-go's public resolver API.
	xdsResolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(fmt.Sprintf("xds:///hello:%d", helloListen), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(xdsResolver))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	testutil.Eventually(t, 20*time.Second, "gRPC health check over xds:/// reaches west", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "west"})
		if err != nil {
			return err
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("status %v", resp.Status)
		}
		return nil
	})

	// A sidecar without a site file, as the injector runs it: its site
	// and gateway come from a token in --credentials-dir, its services
	// from the controller.
	creds := filepath.Join(dir, "creds")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(bin, "token", "issue", "--member", "--site-file", eastFile, "--out", filepath.Join(creds, "token.yaml"), "--expires", "1h"); err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	sc := exec.Command(bin, "sidecar", "--credentials-dir", creds, "--controller", fmt.Sprintf("127.0.0.1:%d", xdsPort),
		"--outbound-bind-address", fmt.Sprintf("127.0.0.1:%d", port()), "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--redirect-wait=0") // no redirection in the root netns
	sc.Env = append(os.Environ(), "SKIFF_POD_NAMESPACE=shop", "SKIFF_POD_NAME=client-1")
	sidecar := testutil.Start(t, sc)

	// The controller knows its clients: the gateway, the sidecar and the
	// gRPC client.
	testutil.Eventually(t, 20*time.Second, "controller lists its clients", func() error {
		st := controllerStatus(t, ctlAdmin)
		for _, want := range []string{`"gateway~east~`, `"sidecar~east~shop/client-1"`, "grpc-interop-client"} {
			if !strings.Contains(st, want) {
				return fmt.Errorf("status lacks %s:\n%s", want, st)
			}
		}
		return nil
	})

	// Kill the controller while traffic flows: nothing is lost, the
	// gateway keeps its table.
	streamsBefore := metric(t, gwAdmin, "skiff_xds_streams_total")
	stopAt := make(chan struct{})
	results := make(chan map[string]int, 1)
	go func() {
		total := map[string]int{}
		for i := 0; i < 60; i++ {
			if i == 20 {
				close(stopAt)
			}
			for k, v := range tally(echoURL, 5) {
				total[k] += v
			}
		}
		results <- total
	}()
	<-stopAt
	controller.Stop(t)
	got := <-results
	if got["east"] != 300 {
		t.Errorf("with the controller gone, 300 requests gave %v", got)
	}
	testutil.Eventually(t, 10*time.Second, "gateway notices the controller is gone", func() error {
		if v := metric(t, gwAdmin, "skiff_xds_connected"); v != 0 {
			return fmt.Errorf("skiff_xds_connected %v", v)
		}
		return nil
	})
	// Restarted, it resyncs the gateway with one new stream.
	start(t, ctl, ctlArgs...)
	testutil.Eventually(t, 20*time.Second, "gateway follows the restarted controller", func() error {
		if v := metric(t, gwAdmin, "skiff_xds_connected"); v != 1 {
			return fmt.Errorf("skiff_xds_connected %v", v)
		}
		return nil
	})
	if d := metric(t, gwAdmin, "skiff_xds_streams_total") - streamsBefore; d != 1 {
		t.Errorf("the gateway opened %v streams to resync, want 1", d)
	}
	if got := tally(echoURL, 20); got["east"] != 20 {
		t.Errorf("after the restart closest answers %v", got)
	}
	// The echo listener's HTTP requests, answered in both sites, are in
	// the gateway's access log on stdout.
	lines := map[string]int{}
	for _, l := range strings.Split(accessLog.String(), "\n") {
		if l == "" {
			continue
		}
		var line struct {
			Address string `json:"address"`
			Site    string `json:"site"`
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("access log line %q: %v", l, err)
		}
		lines[line.Address+"@"+line.Site]++
	}
	if lines["echo@east"] == 0 || lines["echo@west"] == 0 {
		t.Errorf("access log lines by address@site %v; want echo answered by east and by west", lines)
	}
	for name, p := range map[string]*proc{"gateway": gw, "sidecar": sidecar} {
		if strings.Contains(p.Output(), `"level":"error"`) {
			t.Errorf("%s logged errors:\n%s", name, p.Output())
		}
	}
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// tally sends n GETs and counts the answers; failures count as "error".
func tally(url string, n int) map[string]int {
	got := map[string]int{}
	for i := 0; i < n; i++ {
		s, err := getOne(url)
		if err != nil {
			got["error"]++
			continue
		}
		got[s]++
	}
	return got
}

func controllerStatus(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, b)
	}
	return string(b)
}

// metric reads one unlabelled sample from a /metrics endpoint.
func metric(t *testing.T, port int, name string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// syncBuffer is a bytes.Buffer a process writes to while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
