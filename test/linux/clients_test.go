package linux_test

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// curl, a client we did not write, reaches an HTTP server in another site.
func TestCurlAcrossSites(t *testing.T) {
	curl := testutil.RequireTool(t, "curl")[0]
	west := testutil.HTTPNameServer(t, "127.0.0.1:0", "west")
	n := newNetwork(t,
		&siteSpec{name: "east", host: "127.0.0.1", accept: true, listeners: []string{"web"}},
		&siteSpec{name: "west", host: "127.0.0.2", links: []linkTo{{site: "east", cost: 1}}, connectors: []string{"web=" + west}},
	)
	n.waitEndpoints("east", "web", "west")
	out, err := exec.Command(curl, "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", n.url("east", "web")).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "west\n\n200" {
		t.Fatalf("curl got %q, want body west and status 200", got)
	}
	// A 1 MiB upload echoed back byte for byte.
	body := strings.Repeat("skiff-", 1<<20/6)
	cmd := exec.Command(curl, "-sS", "--max-time", "10", "--data-binary", "@-", n.url("east", "web"))
	cmd.Stdin = strings.NewReader(body)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("curl upload: %v", err)
	}
	if string(out) != body {
		t.Fatalf("curl upload echoed %d bytes, want %d identical", len(out), len(body))
	}
}

// redis-benchmark drives a redis-server in another site through the
// network; the replies and the keys it wrote are checked, not only its exit.
func TestRedisAcrossSites(t *testing.T) {
	tools := testutil.RequireTool(t, "redis-server", "redis-benchmark", "redis-cli")
	redisPort := testutil.FreePort(t, "127.0.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, tools[0], "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	redisAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(redisPort))
	testutil.Eventually(t, 10*time.Second, "redis-server up", func() error {
		c, err := net.Dial("tcp", redisAddr)
		if err == nil {
			c.Close()
		}
		return err
	})
	n := newNetwork(t,
		&siteSpec{name: "east", host: "127.0.0.1", accept: true, listeners: []string{"redis"}},
		&siteSpec{name: "west", host: "127.0.0.2", links: []linkTo{{site: "east", cost: 1}}, connectors: []string{"redis=" + redisAddr}},
	)
	n.waitEndpoints("east", "redis", "west")
	host, port, _ := net.SplitHostPort(n.addr("east", "redis"))

	const requests = 5000
	out, err := exec.Command(tools[1], "-h", host, "-p", port, "-n", strconv.Itoa(requests), "-c", "20", "-t", "set,get", "-r", "1000", "--csv").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	t.Logf("redis-benchmark through east->west:\n%s", out)
	re := regexp.MustCompile(`(?m)^"(SET|GET)","([0-9.]+)"`)
	got := re.FindAllStringSubmatch(string(out), -1)
	if len(got) != 2 {
		t.Fatalf("redis-benchmark output has %d SET/GET rows, want 2:\n%s", len(got), out)
	}
	for _, row := range got {
		if rps, _ := strconv.ParseFloat(row[2], 64); rps <= 0 {
			t.Fatalf("%s: %s requests/s", row[1], row[2])
		}
	}
	// The benchmark's keys are in the real server, read directly.
	direct, err := exec.Command(tools[2], "-h", "127.0.0.1", "-p", strconv.Itoa(redisPort), "DBSIZE").Output()
	if err != nil {
		t.Fatal(err)
	}
	if size, _ := strconv.Atoi(strings.TrimSpace(string(direct))); size == 0 {
		t.Fatalf("redis DBSIZE = %q after the benchmark, want keys", direct)
	}
	// A value written through the network is read back directly and vice versa.
	if out, err := exec.Command(tools[2], "-h", host, "-p", port, "SET", "skiff:probe", "through-the-link").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "OK" {
		t.Fatalf("SET through the network: %q %v", out, err)
	}
	if out, _ := exec.Command(tools[2], "-h", "127.0.0.1", "-p", strconv.Itoa(redisPort), "GET", "skiff:probe").Output(); strings.TrimSpace(string(out)) != "through-the-link" {
		t.Fatalf("GET directly = %q, want through-the-link", out)
	}
	// The gateway counted the streams.
	if v := counterValue(t, n.sites["east"].reg, "skiff_streams_opened_total", map[string]string{"address": "redis", "role": "origin"}); v < 20 {
		t.Fatalf("east skiff_streams_opened_total{redis,origin} = %v, want >= 20", v)
	}
}
