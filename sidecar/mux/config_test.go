package mux

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConfigDefaults(t *testing.T) {
	defaults := Config{
		StreamWindow:       DefaultStreamWindow,
		MaxFrameSize:       DefaultMaxFrameSize,
		KeepAliveInterval:  DefaultKeepAliveInterval,
		KeepAliveTimeout:   DefaultKeepAliveTimeout,
		AcceptBacklog:      DefaultAcceptBacklog,
		MaxIncomingStreams: DefaultMaxIncomingStreams,
	}
	for _, tc := range []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, defaults},
		{"kept", Config{StreamWindow: 1 << 20, MaxFrameSize: 64 << 10, KeepAliveInterval: time.Second, KeepAliveTimeout: 10 * time.Second, AcceptBacklog: 10, MaxIncomingStreams: 20},
			Config{StreamWindow: 1 << 20, MaxFrameSize: 64 << 10, KeepAliveInterval: time.Second, KeepAliveTimeout: 10 * time.Second, AcceptBacklog: 10, MaxIncomingStreams: 20}},
		{"limits kept", Config{StreamWindow: minStreamWindow, MaxFrameSize: maxFrameSize},
			Config{StreamWindow: minStreamWindow, MaxFrameSize: maxFrameSize, KeepAliveInterval: DefaultKeepAliveInterval, KeepAliveTimeout: DefaultKeepAliveTimeout, AcceptBacklog: DefaultAcceptBacklog, MaxIncomingStreams: DefaultMaxIncomingStreams}},
		{"default interval is half a short timeout", Config{KeepAliveTimeout: time.Second},
			Config{StreamWindow: DefaultStreamWindow, MaxFrameSize: DefaultMaxFrameSize, KeepAliveInterval: 500 * time.Millisecond, KeepAliveTimeout: time.Second, AcceptBacklog: DefaultAcceptBacklog, MaxIncomingStreams: DefaultMaxIncomingStreams}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.in.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if diff := cmp.Diff(tc.in.withDefaults(), tc.want); diff != "" {
				t.Errorf("withDefaults (-got +want):\n%s", diff)
			}
		})
	}
}

// TestConfigValidate: a value that cannot work is an error naming it, not
// a silent clamp.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Config
		want []string // substrings of the error; none: valid
	}{
		{"zero", Config{}, nil},
		{"window too small", Config{StreamWindow: minStreamWindow - 1}, []string{"stream window 65535 outside"}},
		{"window too large", Config{StreamWindow: maxStreamWindow + 1}, []string{"stream window 1073741825 outside"}},
		{"frame too small", Config{MaxFrameSize: 1}, []string{"max frame size 1 outside"}},
		{"frame too large", Config{MaxFrameSize: 1 << 30}, []string{"max frame size 1073741824 outside"}},
		{"negative frame", Config{MaxFrameSize: -1}, []string{"max frame size -1 outside"}},
		{"negative keepalive", Config{KeepAliveInterval: -1, KeepAliveTimeout: -1}, []string{"keepalive interval -1ns is negative", "keepalive timeout -1ns is negative"}},
		{"timeout below twice the interval", Config{KeepAliveInterval: time.Second, KeepAliveTimeout: time.Second}, []string{"keepalive timeout 1s is less than twice the interval 1s"}},
		{"interval too long for the default timeout", Config{KeepAliveInterval: 3 * time.Second}, []string{"keepalive timeout 4s is less than twice the interval 3s"}},
		{"negative backlog", Config{AcceptBacklog: -1}, []string{"accept backlog -1 is negative"}},
		{"negative stream cap", Config{MaxIncomingStreams: -5}, []string{"max incoming streams -5 is negative"}},
		{"all reported", Config{StreamWindow: 1, MaxFrameSize: 1, AcceptBacklog: -1}, []string{"stream window", "max frame size", "accept backlog"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.in.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestInvalidConfigPanics: Client and Server refuse a config that fails
// Validate rather than run with something else.
func TestInvalidConfigPanics(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("Server with MaxFrameSize 1 did not panic")
		} else if err, ok := r.(error); !ok || !strings.Contains(err.Error(), "max frame size 1") {
			t.Fatalf("panic %v, want the Validate error", r)
		}
	}()
	Server(a, Config{MaxFrameSize: 1})
}
