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

// clientSummary keeps the client's key=value line and drops kubectl's
// own log lines.
func TestClientSummary(t *testing.T) {
	for _, tt := range []struct{ out, want string }{
		{"E1206 14:17:39.688469   27474 websocket.go:296] Unknown stream id 1, discarding message\nwest=1500", "west=1500"},
		{"west=4813 sent=4813", "west=4813 sent=4813"},
		{"west=10 sent=10\nE1206 14:17:39.688469   27474 websocket.go:296] Unknown stream id 1", "west=10 sent=10"},
		{"error: unable to upgrade connection", "error: unable to upgrade connection"},
	} {
		if got := clientSummary(tt.out); got != tt.want {
			t.Errorf("clientSummary(%q) = %q, want %q", tt.out, got, tt.want)
		}
	}
}
