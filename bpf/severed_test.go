package bpf

import (
	"os"
	"path/filepath"
	"testing"
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
	r2, err := Load(Config{PinDir: e.pinDir})
	if err != nil {
		t.Fatalf("Load with a severed link pinned: %v", err)
	}
	defer r2.Close()
	atts, err := r2.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 0 {
		t.Errorf("severed attachments still pinned: %+v", atts)
	}
}
