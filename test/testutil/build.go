package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// GoBuild builds skiff's commands (import paths) into dir with the static
// flags of the Makefile's STATIC (CGO_ENABLED=0, -trimpath): the same
// binaries as `make build` and the images, and the same entries in Go's
// build cache, so that a test that runs the real binaries does not compile
// the Kubernetes client a second time with other flags.
func GoBuild(dir string, pkgs ...string) error {
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -trimpath"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}
