package bpf

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// A pod that ended while no agent ran leaves severed links pinned (its
// cgroup is gone); the next Load drops them instead of failing.
func TestLoadDropsSeveredLinks(t *testing.T) {
	e := requireEnv(t)
	cg := filepath.Join(e.cgroupRoot, "gone")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	r := e.load(t)
	if _, err := r.Attach(cg); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := os.Remove(cg); err != nil {
		t.Fatalf("remove the pod's cgroup: %v", err)
	}
	// The kernel severs the links once the dead cgroup is released, which
	// happens a moment after rmdir: an agent starting then loads again.
	testutil.Eventually(t, 10*time.Second, "a new Load drops the severed links", func() error {
		r2, err := Load(Config{PinDir: e.pinDir})
		if err != nil {
			return fmt.Errorf("load with a severed link pinned: %w", err)
		}
		defer r2.Close()
		atts, err := r2.Attachments()
		if err != nil {
			return err
		}
		if len(atts) != 0 {
			return fmt.Errorf("severed attachments still pinned: %+v", atts)
		}
		return nil
	})
}
