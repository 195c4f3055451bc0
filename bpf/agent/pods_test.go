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

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

func TestSkip(t *testing.T) {
	pod := func(mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: testUID, Annotations: map[string]string{contract.StatusAnnotation: "{}"}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		mod(p)
		return p
	}
	sidecar := func(site string, native bool) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			c := corev1.Container{Name: contract.SidecarContainerName, Env: []corev1.EnvVar{{Name: contract.EnvPodName, Value: "p"}, {Name: contract.EnvSite, Value: site}}}
			if native {
				p.Spec.InitContainers = append(p.Spec.InitContainers, c)
			} else {
				p.Spec.Containers = append([]corev1.Container{c}, p.Spec.Containers...)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		why     string
		refusal string
	}{
		{"injected", pod(func(*corev1.Pod) {}), "", ""},
		{"pending", pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }), "", ""},
		{"not injected", pod(func(p *corev1.Pod) { p.Annotations = map[string]string{contract.InjectAnnotation: "true"} }), "not injected", ""},
		{"no UID", pod(func(p *corev1.Pod) { p.UID = "" }), "no UID", ""},
		{"succeeded", pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), "terminated", ""},
		{"failed", pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }), "terminated", ""},
		{"host network", pod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), "host network: its connections are the node's", reasonHostNetwork},
		{"the site's native sidecar", pod(sidecar("east", true)), "", ""},
		{"the site's sidecar", pod(sidecar("east", false)), "", ""},
		{"another site's sidecar", pod(sidecar("west", true)),
			"its sidecar is site west's (SKIFF_SITE=west) and this namespace is site east's, whose node agent redirects only its own pods", reasonOtherSite},
		{"a container of that name elsewhere", pod(func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "app", Env: []corev1.EnvVar{{Name: contract.EnvSite, Value: "west"}}})
		}), "", ""},
	} {
		why, refusal := skip(tc.pod, "east")
		if why != tc.why || refusal != tc.refusal {
			t.Errorf("%s: skip = %q, %q; want %q, %q", tc.name, why, refusal, tc.why, tc.refusal)
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
	t.Setenv("POD_NAMESPACE", "")
	base := []string{"--node-name", "n", "--site", "east", "--namespace", "east"}
	for _, tc := range []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"--node-name", "node-a", "--site", "east", "--namespace", "east", "--controller", "skiff-controller.east.svc:15010"}, ""},
		{base, ""},
		{append(base, "--pin-dir", "/sys/fs/bpf/mine"), ""},
		{[]string{"--site", "east", "--namespace", "east"}, "--node-name is required"},
		{[]string{"--node-name", "Node_A", "--site", "east", "--namespace", "east"}, `--node-name "Node_A"`},
		{[]string{"--node-name", "n", "--namespace", "east"}, "--site is required"},
		{[]string{"--node-name", "n", "--namespace", "east", "--controller", "ctl:15010"}, "--site is required"},
		{[]string{"--node-name", "n", "--site", "../x", "--namespace", "east"}, "--site: site name must be a DNS-1123 label"},
		{[]string{"--node-name", "n", "--site", "east"}, "--namespace is required"},
		{[]string{"--node-name", "n", "--site", "east", "--namespace", "East_1"}, `--namespace "East_1"`},
		{append(base, "--controller", "ctl"), `--controller "ctl"`},
		{append(base, "--controller", "ctl:15010", "--credentials-dir", "/etc/skiff/credentials"), ""},
		{append(base, "--credentials-dir", "/etc/skiff/credentials"), "--credentials-dir needs --controller"},
		{append(base, "--cgroup-root", "sys/fs/cgroup"), `--cgroup-root "sys/fs/cgroup": must be an absolute path`},
		{append(base, "--bpffs", "bpf"), `--bpffs "bpf": must be an absolute path`},
		{append(base, "--pin-dir", "skiff"), `--pin-dir "skiff": must be an absolute path`},
		{append(base, "--metrics-bind-address", "0", "--health-probe-bind-address", ":99999"), `--health-probe-bind-address ":99999"`},
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
	t.Setenv("POD_NAMESPACE", "west")
	var o DaemonOptions
	fs := flagSet()
	o.AddFlags(fs)
	fs.Parse([]string{"--bpffs", "/run/bpf", "--site", "west"})
	if o.Namespace != "west" {
		t.Errorf("--namespace default %q, want $POD_NAMESPACE", o.Namespace)
	}
	// Each site has its own pin dir; the legacy dir is the single one of
	// earlier versions, taken over from only without --pin-dir.
	if got := o.pinDir(); got != "/run/bpf/skiff/sites/west" {
		t.Errorf("pin dir under --bpffs /run/bpf: %s", got)
	}
	if got := o.legacyPinDir(); got != "/run/bpf/skiff" {
		t.Errorf("legacy pin dir under --bpffs /run/bpf: %s", got)
	}
	o.PinDir = "/run/bpf/mine"
	if got := o.legacyPinDir(); got != "" {
		t.Errorf("legacy pin dir with --pin-dir: %q, want none", got)
	}
}

func flagSet() *flag.FlagSet { return flag.NewFlagSet("daemon", flag.ContinueOnError) }
