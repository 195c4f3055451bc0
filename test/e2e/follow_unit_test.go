//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// errorLines keeps the last line of each of the last messages with an
// error, counted, and skips lines without one or that are not JSON.
func TestErrorLines(t *testing.T) {
	logs := strings.Join([]string{
		`[pod/gw-1/router] {"level":"info","msg":"link dial failed","error":"refused 1"}`,
		`[pod/gw-1/router] {"level":"info","msg":"link up"}`,
		`[pod/gw-1/router] {"level":"info","msg":"link down","error":"reset"}`,
		`not json at all`,
		`[pod/gw-1/router] {"level":"info","msg":"link dial failed","error":"expired certificate"}`,
		`[pod/gw-1/router] {"level":"info","msg":"save","error":"conflict"}`,
	}, "\n")
	got := errorLines("west", logs, 2)
	want := []string{
		`  west (2x) [pod/gw-1/router] link dial failed: expired certificate`,
		`  west (1x) [pod/gw-1/router] save: conflict`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errorLines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
