package app

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
)

// A gateway that cannot start (its link port is taken) leaves no data dir
// and CA behind that it created; a data dir that was there stays, CA and
// all.
func TestFailedStartRemovesWhatItCreated(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	for _, existed := range []bool{false, true} {
		t.Run(fmt.Sprintf("data dir existed %v", existed), func(t *testing.T) {
			dir := t.TempDir()
			// The data dir's parent is new too: all of it goes.
			dataDir := filepath.Join(dir, "state", "east-data")
			if existed {
				if _, err := pki.LoadOrCreateCA(dataDir, "east"); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "east.yaml")
			yaml := fmt.Sprintf("name: east\ndataDir: state/east-data\nlinkAccess:\n  bind: %s\n", taken.Addr())
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}

			err := RunGateway(t.Context(), ServeOptions{SiteFile: path, MetricsBindAddress: "0", HealthBindAddress: "0"}, testr.New(t))
			if err == nil || !strings.Contains(err.Error(), "listen for links") {
				t.Fatalf("RunGateway() error = %v, want the link port's", err)
			}
			if existed {
				for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
					if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
						t.Errorf("the CA that was there before: %v", err)
					}
				}
				return
			}
			if _, err := os.Stat(filepath.Join(dir, "state")); !os.IsNotExist(err) {
				t.Errorf("after a failed start, %s: stat error %v, want it gone", filepath.Join(dir, "state"), err)
			}
		})
	}
}
