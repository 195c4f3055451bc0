package bpf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/test/testutil"
)

// runLevel prints the level statCgroup finds for a cgroup.
func runLevel(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("level CGROUP")
	}
	cg, err := statCgroup(args[0])
	if err != nil {
		return err
	}
	fmt.Println(cg.level)
	return nil
}

// A process in a private cgroup namespace (a container's agent on a cgroup
// v2 host) sees the cgroup2 mount's root as "/..": the level of a pod's
// cgroup must still be the kernel's, or exclusions would never match.
func TestCgroupLevelInNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("privileged tier (cgroups): not run with -short")
	}
	testutil.RequireRoot(t)
	unshare := testutil.RequireTool(t, "unshare")[0]
	mnt, err := Cgroup2Mount()
	testutil.Require(t, err == nil, "cgroup v2: %v", err)
	ns := filepath.Join(mnt, fmt.Sprintf("skiff-level-test-%d", os.Getpid()))
	pod := filepath.Join(ns, "pod")
	if err := os.MkdirAll(pod, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testutil.RemoveCgroupTree(t, ns) })
	outside, err := statCgroup(pod)
	if err != nil {
		t.Fatal(err)
	}
	if want := depth(strings.TrimPrefix(pod, mnt)); outside.level != want {
		t.Fatalf("level outside a namespace: %d, want %d", outside.level, want)
	}
	// Enter ns, then make it the root of a new cgroup namespace.
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(ns, "cgroup.procs"),
		unshare, "--cgroup", os.Args[0], pod)
	cmd.Env = append(os.Environ(), helperEnv+"=level")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("level helper in a cgroup namespace: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprint(outside.level); got != want {
		t.Errorf("level inside a cgroup namespace: %s, want %s", got, want)
	}
}
