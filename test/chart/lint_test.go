package chart

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHelmLint runs `helm lint --strict` on the chart with each case's
// values. The only message allowed is helm's note that the chart has no
// icon (skiff has no logo yet).
func TestHelmLint(t *testing.T) {
	helm := requireHelm(t)
	for _, name := range []string{"default", "custom"} {
		t.Run(name, func(t *testing.T) {
			values, err := filepath.Abs(filepath.Join("testdata", name+".values.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			out, err := helm.run(t, "lint", "--strict", "charts/skiff", "--values", values)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			var msgs []string
			for line := range strings.Lines(out) {
				if strings.HasPrefix(line, "[") {
					msgs = append(msgs, strings.TrimSpace(line))
				}
			}
			want := []string{"[INFO] Chart.yaml: icon is recommended"}
			if diff := cmp.Diff(msgs, want); diff != "" {
				t.Errorf("helm lint messages differ (-got +want):\n%s\n%s", diff, out)
			}
		})
	}
}
