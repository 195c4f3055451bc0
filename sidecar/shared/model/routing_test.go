package model

import (
	"errors"
	"testing"
)

func TestParseProtocol(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Protocol
		wantErr string
	}{
		{in: "", want: TCP},
		{in: "tcp", want: TCP},
		{in: "http", want: HTTP},
		{in: "http2", want: HTTP2},
		{in: " HTTP2 ", want: HTTP2},
		{in: "udp", wantErr: `unknown protocol "udp"; use tcp, http, http2 or grpc`},
		{in: "grpc", want: GRPC},
		{in: "h2c", wantErr: `unknown protocol "h2c"; use tcp, http, http2 or grpc`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseProtocol(tc.in)
			checkErr(t, err, tc.wantErr, ErrUnknownProtocol)
			if got != tc.want {
				t.Errorf("ParseProtocol(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Pattern
		wantErr string
	}{
		{in: "", want: Balanced},
		{in: "balanced", want: Balanced},
		{in: "closest", want: Closest},
		{in: " Closest ", want: Closest},
		// A name, known; whether it is served is CheckRouting's call.
		{in: "multicast", want: Multicast},
		{in: "fastest", wantErr: `unknown routing "fastest"; use balanced, closest or multicast`},
		{in: "round-robin", wantErr: `unknown routing "round-robin"; use balanced, closest or multicast`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePattern(tc.in)
			checkErr(t, err, tc.wantErr, ErrUnknownPattern)
			if got != tc.want {
				t.Errorf("ParsePattern(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestAppProtocol(t *testing.T) {
	for in, want := range map[string]Protocol{
		"":                   TCP,
		"tcp":                TCP,
		"http":               HTTP,
		"HTTP":               HTTP,
		"kubernetes.io/http": HTTP,
		"http2":              HTTP2,
		"h2c":                HTTP2,
		"grpc":               GRPC,
		"kubernetes.io/h2c":  HTTP2,
		"https":              TCP,
		"kubernetes.io/ws":   TCP,
		"mysql":              TCP,
	} {
		if got := AppProtocol(in); got != want {
			t.Errorf("AppProtocol(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckRouting(t *testing.T) {
	const multicast = "multicast copies HTTP requests, not tcp connections; set the protocol to http or http2, or use balanced or closest"
	for _, tc := range []struct {
		protocol Protocol
		pattern  Pattern
		wantErr  string
		is       error
	}{
		{protocol: "", pattern: ""},
		{protocol: TCP, pattern: Balanced},
		{protocol: TCP, pattern: Closest},
		{protocol: HTTP, pattern: Balanced},
		{protocol: HTTP, pattern: Closest},
		{protocol: HTTP2, pattern: Balanced},
		{protocol: HTTP2, pattern: Closest},
		// Multicast copies requests: HTTP protocols only, and the
		// same words for a connection whatever the source.
		{protocol: "", pattern: Multicast, wantErr: multicast, is: ErrMulticast},
		{protocol: TCP, pattern: Multicast, wantErr: multicast, is: ErrMulticast},
		{protocol: HTTP, pattern: Multicast},
		{protocol: HTTP2, pattern: Multicast},
		{protocol: GRPC, pattern: Multicast, wantErr: "multicast copies HTTP requests and answers with skiff's own document, which a gRPC client cannot read; use balanced or closest for grpc", is: ErrMulticast},
		// Values that did not come from ParseProtocol or ParsePattern.
		{protocol: "udp", pattern: Balanced, wantErr: `unknown protocol "udp"; use tcp, http, http2 or grpc`, is: ErrUnknownProtocol},
		{protocol: "HTTP", pattern: Balanced, wantErr: `unknown protocol "HTTP"; use tcp, http, http2 or grpc`, is: ErrUnknownProtocol},
		{protocol: TCP, pattern: "fastest", wantErr: `unknown routing "fastest"; use balanced, closest or multicast`, is: ErrUnknownPattern},
		{protocol: TCP, pattern: "Closest", wantErr: `unknown routing "Closest"; use balanced, closest or multicast`, is: ErrUnknownPattern},
	} {
		t.Run(string(tc.protocol)+"/"+string(tc.pattern), func(t *testing.T) {
			checkErr(t, CheckRouting(tc.protocol, tc.pattern), tc.wantErr, tc.is)
		})
	}
}

// checkErr checks that err is nil when want is "", else that it reads
// want and wraps is.
func checkErr(t *testing.T, err error, want string, is error) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want == "":
	case err == nil:
		t.Fatalf("no error, want %q", want)
	case err.Error() != want:
		t.Errorf("error %q, want %q", err, want)
	case !errors.Is(err, is):
		t.Errorf("error %q does not wrap %q", err, is)
	}
}
