package mux

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConfigDefaults(t *testing.T) {
	defaults := Config{
		StreamWindow:      DefaultStreamWindow,
		MaxFrameSize:      DefaultMaxFrameSize,
		KeepAliveInterval: DefaultKeepAliveInterval,
		KeepAliveTimeout:  DefaultKeepAliveTimeout,
		AcceptBacklog:     DefaultAcceptBacklog,
	}
	for _, tc := range []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, defaults},
		{"negative", Config{MaxFrameSize: -1, KeepAliveInterval: -1, KeepAliveTimeout: -1, AcceptBacklog: -1}, defaults},
		{"kept", Config{StreamWindow: 1 << 20, MaxFrameSize: 64 << 10, KeepAliveInterval: time.Second, KeepAliveTimeout: 10 * time.Second, AcceptBacklog: 10},
			Config{StreamWindow: 1 << 20, MaxFrameSize: 64 << 10, KeepAliveInterval: time.Second, KeepAliveTimeout: 10 * time.Second, AcceptBacklog: 10}},
		{"clamped low", Config{StreamWindow: 1, MaxFrameSize: 1},
			Config{StreamWindow: minStreamWindow, MaxFrameSize: minFrameSize, KeepAliveInterval: DefaultKeepAliveInterval, KeepAliveTimeout: DefaultKeepAliveTimeout, AcceptBacklog: DefaultAcceptBacklog}},
		{"clamped high", Config{StreamWindow: 1 << 31, MaxFrameSize: 1 << 30},
			Config{StreamWindow: maxStreamWindow, MaxFrameSize: maxFrameSize, KeepAliveInterval: DefaultKeepAliveInterval, KeepAliveTimeout: DefaultKeepAliveTimeout, AcceptBacklog: DefaultAcceptBacklog}},
		{"interval lowered to half the timeout", Config{KeepAliveTimeout: time.Second},
			Config{StreamWindow: DefaultStreamWindow, MaxFrameSize: DefaultMaxFrameSize, KeepAliveInterval: 500 * time.Millisecond, KeepAliveTimeout: time.Second, AcceptBacklog: DefaultAcceptBacklog}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.in.withDefaults(), tc.want); diff != "" {
				t.Errorf("withDefaults (-got +want):\n%s", diff)
			}
		})
	}
}
