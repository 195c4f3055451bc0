package agent

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/sidecar/contract"
	"github.com/skiff-io/skiff/xds/model"
)

func TestSkip(t *testing.T) {
	pod := func(mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: testUID, Annotations: map[string]string{contract.StatusAnnotation: "{}"}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		mod(p)
		return p
	}
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		why    string
		refuse bool
	}{
		{"injected", pod(func(*corev1.Pod) {}), "", false},
		{"pending", pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }), "", false},
		{"not injected", pod(func(p *corev1.Pod) { p.Annotations = map[string]string{contract.InjectAnnotation: "true"} }), "not injected", false},
		{"no UID", pod(func(p *corev1.Pod) { p.UID = "" }), "no UID", false},
		{"succeeded", pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), "terminated", false},
		{"failed", pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }), "terminated", false},
		{"host network", pod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), "host network: its connections are the node's", true},
	} {
		why, refuse := skip(tc.pod)
		if why != tc.why || refuse != tc.refuse {
			t.Errorf("%s: skip = %q, %v; want %q, %v", tc.name, why, refuse, tc.why, tc.refuse)
		}
	}
}

func TestPodExclusions(t *testing.T) {
	ports, cidrs := contract.ConfigExcludeOutboundPortsAnnotation, contract.ConfigExcludeOutboundCIDRsAnnotation
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want string // fmt of the exclusions, or the error's start
	}{
		{"none", nil, "{[] []}"},
		{"both", map[string]string{ports: "8125, 53,53", cidrs: "10.1.2.3/8,fd00::1,192.168.0.7"}, "{[53 8125] [10.0.0.0/8 fd00::1/128 192.168.0.7/32]}"},
		{"other config annotations are the injector's", map[string]string{contract.ConfigProxyCPUAnnotation: "lots", "config.skiff.io/future": "x", ports: "80"}, "{[80] []}"},
		{"bad port", map[string]string{ports: "80,http"}, `annotation config.skiff.io/exclude-outbound-ports: "80,http": port "http"`},
		{"port 0", map[string]string{ports: "0"}, `annotation config.skiff.io/exclude-outbound-ports: "0"`},
		{"empty item", map[string]string{cidrs: "10.0.0.0/8,"}, `annotation config.skiff.io/exclude-outbound-cidrs: "10.0.0.0/8,": empty item 2`},
		{"bad prefix", map[string]string{cidrs: "10.0.0.0/33"}, `annotation config.skiff.io/exclude-outbound-cidrs: "10.0.0.0/33"`},
	} {
		ex, err := podExclusions(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: tc.ann}})
		got := fmt.Sprintf("{%v %v}", ex.Ports, ex.CIDRs)
		if err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestServiceAddrs(t *testing.T) {
	addrs, skipped := serviceAddrs([]model.Service{
		{Address: "backend", Port: 8080, VIPs: []string{"10.96.0.10", "fd00::10"}},
		{Address: "web", Port: 80, VIPs: []string{"10.96.0.11", "::ffff:10.96.0.12"}},
		{Address: "again", Port: 8080, VIPs: []string{"10.96.0.10"}},
		{Address: "file", Port: 18080, VIPs: []string{"127.0.0.1", "backend.local", "0.0.0.0", "fe80::1%eth0"}},
		{Address: "noport", Port: 0, VIPs: []string{"10.96.0.13"}},
	})
	want := []netip.AddrPort{
		netip.MustParseAddrPort("10.96.0.10:8080"), netip.MustParseAddrPort("10.96.0.11:80"),
		netip.MustParseAddrPort("10.96.0.12:80"), netip.MustParseAddrPort("[fd00::10]:8080"),
	}
	if diff := cmp.Diff(addrs, want, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("addresses (-got +want)\n%s", diff)
	}
	if diff := cmp.Diff(skipped, []string{"0.0.0.0:18080", "10.96.0.13:0", "127.0.0.1:18080", "backend.local:18080", "fe80::1%eth0:18080"}); diff != "" {
		t.Errorf("skipped (-got +want)\n%s", diff)
	}
}

func TestDaemonOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"--node-name", "node-a", "--site", "east", "--controller", "skiff-controller.east.svc:15010"}, ""},
		{[]string{"--node-name", "node-a"}, ""},
		{nil, "--node-name is required"},
		{[]string{"--node-name", "Node_A"}, `--node-name "Node_A"`},
		{[]string{"--node-name", "n", "--controller", "ctl:15010"}, "--site is required with --controller"},
		{[]string{"--node-name", "n", "--site", "east", "--controller", "ctl"}, `--controller "ctl"`},
		{[]string{"--node-name", "n", "--site", "east", "--controller", "ctl:15010", "--credentials-dir", "/etc/skiff/credentials"}, ""},
		{[]string{"--node-name", "n", "--credentials-dir", "/etc/skiff/credentials"}, "--credentials-dir needs --controller"},
		{[]string{"--node-name", "n", "--cgroup-root", "sys/fs/cgroup"}, `--cgroup-root "sys/fs/cgroup": must be an absolute path`},
		{[]string{"--node-name", "n", "--bpffs", "bpf"}, `--bpffs "bpf": must be an absolute path`},
		{[]string{"--node-name", "n", "--metrics-bind-address", "0", "--health-probe-bind-address", ":99999"}, `--health-probe-bind-address ":99999"`},
	} {
		fs := flagSet()
		var o DaemonOptions
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		err := o.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: Validate() = %v, want %q", tc.args, err, tc.want)
		}
	}
	var o DaemonOptions
	fs := flagSet()
	o.AddFlags(fs)
	fs.Parse([]string{"--bpffs", "/run/bpf"})
	if got := o.pinDir(); got != "/run/bpf/skiff" {
		t.Errorf("pin dir under --bpffs /run/bpf: %s", got)
	}
}

func flagSet() *flag.FlagSet { return flag.NewFlagSet("daemon", flag.ContinueOnError) }
