package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// GoBuild builds skiff's commands (import paths) into dir with the static
// flags of the Makefile's STATIC (CGO_ENABLED=0, -trimpath, the tags of
// hack/go-tags): the same binaries as `make build` and the images, and the
// same entries in Go's build cache, so that a test that runs the real
// binaries does not compile the Kubernetes client a second time with other
// flags.
func GoBuild(dir string, pkgs ...string) error {
	tags, err := GoTags()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -trimpath -tags="+tags))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

// GoTags returns the build tags skiff's binaries are built with: the
// contents of hack/go-tags in the repository around the working directory
// (the Makefile's GO_TAGS).
func GoTags() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, "hack", "go-tags"))
	if err != nil {
		return "", fmt.Errorf("reading the build tags: %w", err)
	}
	return strings.Join(strings.Fields(string(b)), ""), nil
}

// RepoRoot returns the directory of skiff's go.mod at or above the working
// directory (a test's is its package's directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}
