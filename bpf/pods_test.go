package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// Two pods whose connections have the same 4-tuple, 127.0.0.1:40000 ->
// 127.0.0.1:15001, in different network namespaces: both are set up before
// either sidecar asks for its original destination, and each gets its own.
func TestSameTupleTwoPods(t *testing.T) {
	e := requireEnv(t)
	r := e.load(t)
	vips := map[string]string{"b": "10.96.1.1:80", "c": "10.96.2.2:80"}
	var services []netip.AddrPort
	for _, v := range vips {
		services = append(services, netip.MustParseAddrPort(v))
	}
	if err := r.SetServices(services); err != nil {
		t.Fatal(err)
	}
	type running struct {
		stdin io.WriteCloser
		lines *bufio.Reader
		done  *proc
	}
	clients := map[string]running{}
	for _, name := range []string{"b", "c"} {
		p := e.newPod(t, name, 0) // no veth: the VIPs are never dialled
		p.startOrigDst(t, "127.0.0.1:15001")
		if _, err := r.Attach(p.cgroup); err != nil {
			t.Fatal(err)
		}
		cmd := p.command("app", 0, e.helper, vips[name], "40000", "wait")
		cmd.Env = append(os.Environ(), helperEnv+"=client")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, w := io.Pipe()
		cmd.Stdout = w
		clients[name] = running{stdin: stdin, lines: bufio.NewReader(out), done: start(t, cmd)}
	}
	readLine := func(name string) string {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			l, _ := clients[name].lines.ReadString('\n')
			got <- strings.TrimSpace(l)
		}()
		select {
		case l := <-got:
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("client in pod %s said nothing:\n%s", name, clients[name].done.Output())
			return ""
		}
	}
	for _, name := range []string{"b", "c"} {
		if got, want := readLine(name), "connected 127.0.0.1:40000 127.0.0.1:15001"; got != want {
			t.Fatalf("pod %s: %q, want %q", name, got, want)
		}
	}
	// Both 4-tuples are in the map now, told apart by the netns cookie.
	var k redirectPairKey
	var v redirectOrigDst
	seen := map[uint64]netip.AddrPort{}
	it := r.objs.PairOrig.Iterate()
	for it.Next(&k, &v) {
		if k.ClientPort == 40000 && k.ServerPort == 15001 {
			seen[k.Netns] = origDst(v)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 {
		t.Errorf("pair_orig holds %v for the shared 4-tuple, want one entry per netns", seen)
	}
	for _, name := range []string{"b", "c"} {
		fmt.Fprintln(clients[name].stdin)
	}
	for _, name := range []string{"b", "c"} {
		if got, want := readLine(name), "body orig="+vips[name]; got != want {
			t.Errorf("pod %s: %q, want %q", name, got, want)
		}
	}
}

// A thousand pods' worth of map entries: 1,000 attached cgroups, each
// with excluded ports and CIDRs, and 4,000 services. One real pod among
// them still redirects and keeps its exclusions; detaching them all
// leaves the maps as they were.
func TestThousandPods(t *testing.T) {
	e := requireEnv(t)
	r := e.load(t)
	const pods = 1000
	services := []netip.AddrPort{netip.MustParseAddrPort("10.96.0.10:80"), netip.MustParseAddrPort("10.96.0.10:81")}
	for i := range 4 * pods {
		services = append(services, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)}), 80))
	}
	began := time.Now()
	if err := r.SetServices(services); err != nil {
		t.Fatal(err)
	}
	t.Logf("SetServices(%d) took %s", len(services), time.Since(began))

	p := e.newPod(t, "real", 0)
	p.startOrigDst(t, "127.0.0.1:15001")
	if _, err := r.Attach(p.cgroup); err != nil {
		t.Fatal(err)
	}
	if err := r.SetExclusions(p.cgroup, Exclusions{Ports: []uint16{81}}); err != nil {
		t.Fatal(err)
	}

	many := filepath.Join(e.cgroupRoot, "many")
	began = time.Now()
	var closers []io.Closer
	for i := range pods {
		cg := filepath.Join(many, fmt.Sprintf("pod%04d", i))
		if err := os.MkdirAll(cg, 0o755); err != nil {
			t.Fatal(err)
		}
		ex := Exclusions{
			Ports: []uint16{uint16(20000 + i), 15090},
			CIDRs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), 32), netip.MustParsePrefix("fd00::/8")},
		}
		if err := r.SetExclusions(cg, ex); err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		c, err := r.Attach(cg)
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		closers = append(closers, c)
	}
	t.Logf("%d pods attached with exclusions in %s", pods, time.Since(began))

	as, err := r.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != pods+1 {
		t.Errorf("%d attachments, want %d", len(as), pods+1)
	}
	if got := countEntries(t, r.objs.Pods); got != pods+1 {
		t.Errorf("pods map: %d entries, want %d", got, pods+1)
	}
	if got := countEntries(t, r.objs.ExclCidrs); got != 2*pods {
		t.Errorf("excl_cidrs map: %d entries, want %d", got, 2*pods)
	}
	check := func() {
		t.Helper()
		if out, err := p.client("10.96.0.10:80"); err != nil || !strings.Contains(out, "body orig=10.96.0.10:80") {
			t.Errorf("the real pod among many: %v\n%s", err, out)
		}
		// Port 81 is excluded for the real pod: not redirected, and
		// nothing listens at the VIP.
		if out, err := p.client("10.96.0.10:81"); err == nil || strings.Contains(out, "body") {
			t.Errorf("an excluded port was redirected: %s", out)
		}
	}
	check()
	exs, err := r.Exclusions(filepath.Join(many, "pod0999"))
	if err != nil || fmt.Sprint(exs.Ports) != "[15090 20999]" || len(exs.CIDRs) != 2 {
		t.Errorf("exclusions of pod 999: %+v %v", exs, err)
	}

	began = time.Now()
	for _, c := range closers {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d pods detached in %s", pods, time.Since(began))
	if as, _ := r.Attachments(); len(as) != 1 {
		t.Errorf("%d attachments after detaching the many, want 1", len(as))
	}
	for name, m := range map[string]int{"pods": countEntries(t, r.objs.Pods), "excl_ports": countEntries(t, r.objs.ExclPorts), "excl_cidrs": countEntries(t, r.objs.ExclCidrs)} {
		if m != 1 && name != "excl_cidrs" || name == "excl_cidrs" && m != 0 {
			t.Errorf("%s: %d entries left after detaching the many", name, m)
		}
	}
	check()
}

func countEntries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	n := 0
	var key any // nil: the first key
	for {
		next := make([]byte, m.KeySize())
		if err := m.NextKey(key, next); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				t.Fatalf("iterate %s: %v", m, err)
			}
			return n
		}
		n++
		key = next
	}
}
