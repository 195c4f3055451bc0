package chart

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// helmCLI runs bin/helm (built by hack/helm.sh) from the repository root
// with its cache, config and data homes in a temporary directory, so
// nothing is written to $HOME.
type helmCLI struct {
	path       string
	root       string // repository root, the working directory
	env        []string
	kubeconfig string
}

// requireHelm returns the helm CLI; the test is skipped (failed in CI) when
// bin/helm is missing.
func requireHelm(t *testing.T) *helmCLI {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "bin", "helm")
	_, err = os.Stat(path)
	testutil.Require(t, err == nil, "%s missing: run hack/helm.sh", path)
	home := t.TempDir()
	return &helmCLI{
		path: path,
		root: root,
		env: []string{
			"HELM_CACHE_HOME=" + filepath.Join(home, "cache"),
			"HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
			"HELM_DATA_HOME=" + filepath.Join(home, "data"),
		},
	}
}

// run runs helm with args and returns its combined output. The bound is a
// guard against a hung command, not a performance assertion.
func (h *helmCLI) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.path, args...)
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), h.env...)
	if h.kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+h.kubeconfig)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
