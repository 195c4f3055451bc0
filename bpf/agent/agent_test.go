package agent

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/bpf"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/test/testutil"
)

func TestParseServices(t *testing.T) {
	got, err := parseServices(strings.NewReader("# services\n10.96.0.10:80\n\n[fd00::10]:8080 # v6\n"), "svc.txt")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fmt.Sprint(got), "[10.96.0.10:80 [fd00::10]:8080]"); diff != "" {
		t.Errorf("(-got +want)\n%s", diff)
	}
	_, err = parseServices(strings.NewReader("10.96.0.10:80\nbackend:80\n10.0.0.1\n"), "svc.txt")
	want := "svc.txt:2: want IP:PORT ([IPv6]:PORT), got \"backend:80\"\nsvc.txt:3: want IP:PORT ([IPv6]:PORT), got \"10.0.0.1\""
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		args []string
		want string // "" for valid
	}{
		{"attach", []string{"--site", "east", "--cgroup", "/sys/fs/cgroup/pod"}, ""},
		{"attach", []string{"--cgroup", "/sys/fs/cgroup/pod"}, "--site is required"},
		{"attach", []string{"--cgroup", "/sys/fs/cgroup/pod", "--pin-dir", "/sys/fs/bpf/x"}, "--site is required"},
		{"attach", []string{"--site", "East", "--cgroup", "/sys/fs/cgroup/pod"}, "--site: site name must be a DNS-1123 label"},
		{"attach", []string{"--site", "../east", "--cgroup", "/sys/fs/cgroup/pod"}, "--site: site name must be a DNS-1123 label"},
		{"attach", []string{"--site", "east"}, "--cgroup is required"},
		{"attach", []string{"--site", "east", "--cgroup", "/x", "--service", "backend:80"}, `--service "backend:80"`},
		{"attach", []string{"--site", "east", "--cgroup", "/x", "--exclude-ports", "80,0"}, `--exclude-ports: "0" is not a port`},
		{"attach", []string{"--site", "east", "--cgroup", "/x", "--exclude-cidrs", "10.0.0.0/33"}, "--exclude-cidrs"},
		{"attach", []string{"--site", "east", "--cgroup", "/x", "--exclude-ports", "80, 443", "--exclude-cidrs", "10.0.0.0/8,fd00::/8"}, ""},
		{"services", []string{"--site", "east"}, "--service or --services is required"},
		{"services", []string{"--site", "east", "--service", "[fd00::1]:80"}, ""},
		{"status", []string{"--pin-dir", "skiff"}, "must be an absolute path"},
		{"status", nil, "--site or --pin-dir is required"},
		{"status", []string{"--pin-dir", "/sys/fs/bpf/skiff"}, ""},
		{"uninstall", []string{"--site", "east"}, ""},
		{"detach", []string{"--site", "east", "--cgroup", "/x"}, ""},
		{"detach", []string{"--pin-dir", "/sys/fs/bpf/x", "--cgroup", "/x"}, ""},
	} {
		fs := flag.NewFlagSet(c.cmd, flag.ContinueOnError)
		var o Options
		o.AddFlags(fs, c.cmd)
		if err := fs.Parse(c.args); err != nil {
			t.Fatalf("%s %v: %v", c.cmd, c.args, err)
		}
		err := o.Validate(c.cmd)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s %v: Validate() = %v, want %q", c.cmd, c.args, err, c.want)
		}
	}
}

// The skiff-node-agent binary, as a user runs it: attach a cgroup with
// services from a file, read status, detach, uninstall.
func TestNodeAgentCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("privileged tier (eBPF): not run with -short")
	}
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "go")
	mnt, err := bpf.Cgroup2Mount()
	testutil.Require(t, err == nil, "cgroup v2: %v", err)
	dir := t.TempDir()
	bin := filepath.Join(dir, "skiff-node-agent")
	if err := testutil.GoBuild(dir, "github.com/skiff-io/skiff/bpf/cmd/skiff-node-agent"); err != nil {
		t.Fatal(err)
	}
	pinDir := fmt.Sprintf("/sys/fs/bpf/skiff-cli-test-%d", os.Getpid())
	cg := filepath.Join(mnt, fmt.Sprintf("skiff-cli-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	t.Cleanup(func() { bpf.Uninstall(pinDir) })
	svc := filepath.Join(dir, "services.txt")
	os.WriteFile(svc, []byte("10.96.0.10:80\n[fd00::10]:80\n"), 0o644)

	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append(args[:1:1], append([]string{"--pin-dir", pinDir}, args[1:]...)...)...)
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			return string(out) + stderr, err
		}
		return string(out), nil
	}
	agent := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("skiff-node-agent %v: %v\n%s", args, err, out)
		}
		return out
	}
	status := func() Status {
		t.Helper()
		var st Status
		if err := json.Unmarshal([]byte(agent("status")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); st.Loaded {
		t.Errorf("status before anything: %+v", st)
	}
	agent("attach", "--site", "cli", "--cgroup", cg, "--services", svc, "--exclude-ports", "15090", "--exclude-cidrs", "10.0.0.0/8")
	st := status()
	if !st.Loaded || st.Services != 2 || len(st.Attachments) != 1 || st.Attachments[0].Path != cg || len(st.Attachments[0].Programs) != 4 ||
		st.Probe != contract.RedirectProbeSiteAddr("cli").String() {
		t.Errorf("status after attach: %+v", st)
	}
	// status only looks: the links keep the programs attach loaded (Load
	// would load new ones and move the links to them).
	before := linkedPrograms(t, pinDir)
	status()
	if after := linkedPrograms(t, pinDir); !slices.Equal(before, after) || len(before) != 4 {
		t.Errorf("program ids behind the pinned links: %v before status, %v after", before, after)
	}
	if out, err := run("services", "--site", "other", "--service", "10.96.0.11:80"); err == nil || !strings.Contains(out, "holds the programs of another site") {
		t.Errorf("services of another site in this pin dir: %v\n%s", err, out)
	}
	agent("services", "--site", "cli", "--service", "10.96.0.11:80")
	if st := status(); st.Services != 1 {
		t.Errorf("services after replacing: %d, want 1", st.Services)
	}
	agent("detach", "--cgroup", cg)
	if st := status(); len(st.Attachments) != 0 {
		t.Errorf("attachments after detach: %+v", st.Attachments)
	}
	agent("uninstall")
	if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
		t.Errorf("pin dir after uninstall: %v", err)
	}
}

// linkedPrograms returns the ids of the programs behind the links pinned
// under pinDir, sorted.
func linkedPrograms(t *testing.T, pinDir string) []ebpf.ProgramID {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(pinDir, "links", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []ebpf.ProgramID
	for _, p := range paths {
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			t.Fatalf("open pinned link %s: %v", p, err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatalf("pinned link %s: %v", p, err)
		}
		ids = append(ids, info.Program)
	}
	slices.Sort(ids)
	return ids
}
