package logging

import (
	"strings"
	"testing"
)

func TestLevels(t *testing.T) {
	for _, l := range []string{"debug", "info", "error"} {
		log, flush, err := New(Options{Level: l}, "test")
		if err != nil {
			t.Fatalf("level %s: %v", l, err)
		}
		if got, want := log.V(1).Enabled(), l == "debug"; got != want {
			t.Errorf("level %s: V(1) enabled %v, want %v", l, got, want)
		}
		if got, want := log.Enabled(), l != "error"; got != want {
			t.Errorf("level %s: info enabled %v, want %v", l, got, want)
		}
		flush()
	}
	if _, _, err := New(Options{Level: "loud"}, "test"); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Errorf("unknown level: %v", err)
	}
}
