package lint

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/test/testutil"
)

// raceCore is skiff's own concurrent code: make test must run its tests
// under the race detector. hack/test-packages.sh puts a package in the
// race group unless its test binary links Kubernetes or helm, so one
// import of a Kubernetes helper into a shared test package (testutil)
// silently moves all of these out of it; that happened once (2026-12-05,
// testutil.StartEnvtest) and went unseen for a day and a half.
var raceCore = []string{
	"sidecar/mux",
	"sidecar/router",
	"sidecar/l7",
	"sidecar/shared/netview",
	"sidecar/shared/rawio",
	"sidecar/app",
	"xds/server",
	"bpf",
}

func TestRaceGroupHoldsTheConcurrentCore(t *testing.T) {
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "hack/test-packages.sh", "race")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/test-packages.sh race: %v", err)
	}
	var race []string
	for _, p := range strings.Fields(string(out)) {
		race = append(race, strings.TrimPrefix(p, "github.com/skiff-io/skiff/"))
	}
	for _, p := range raceCore {
		if !slices.Contains(race, p) {
			t.Errorf("%s is not in make test's race group (hack/test-packages.sh race): its test binary links Kubernetes or helm; "+
				"keep Kubernetes helpers in test/testutil/kubetest, not test/testutil", p)
		}
	}
}
