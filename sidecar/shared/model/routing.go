package model

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// This file is the one definition of protocols and routing patterns, and
// CheckRouting the one validator of what the data plane serves. Every
// source (the site file, the Kubernetes source) and every consumer (the
// router's xDS client, the routing package) calls it, so that a
// configuration the data plane cannot serve is refused where it is
// written, with the same words everywhere. Widening what is served (HTTP
// routing) changes this file only.

// Protocol is what a service's endpoints speak, and so how its
// connections are routed: whole TCP connections, or HTTP requests.
type Protocol string

// Protocols.
const (
	TCP Protocol = "tcp"
	// HTTP is HTTP/1.1; clients may speak cleartext HTTP/2 to skiff.
	HTTP Protocol = "http"
	// HTTP2 is cleartext HTTP/2 (prior knowledge).
	HTTP2 Protocol = "http2"
	// GRPC is gRPC: cleartext HTTP/2 with trailers.
	GRPC Protocol = "grpc"
)

// IsHTTP reports a protocol whose requests skiff routes one by one.
func (p Protocol) IsHTTP() bool { return p == HTTP || p == HTTP2 || p == GRPC }

// Pattern is a routing pattern.
type Pattern string

// Routing patterns.
const (
	// Balanced spreads connections (or requests) over every ready endpoint
	// in every reachable site, weighted by endpoint count and path cost.
	Balanced Pattern = "balanced"
	// Closest sends everything to the lowest-cost site that has a ready
	// endpoint, failing over to the next when it has none.
	Closest Pattern = "closest"
	// Multicast copies HTTP requests to every endpoint.
	Multicast Pattern = "multicast"
)

var (
	protocols = []Protocol{TCP, HTTP, HTTP2, GRPC}
	patterns  = []Pattern{Balanced, Closest, Multicast}
)

// What the errors suggest instead.
const (
	useProtocols = "use tcp, http, http2 or grpc"
	// usePatterns are the patterns; multicast for HTTP protocols only.
	usePatterns = "use balanced, closest or multicast"
	// useUnicast are the patterns CheckRouting accepts for every
	// protocol.
	useUnicast = "use balanced or closest"
)

// Errors of ParseProtocol, ParsePattern and CheckRouting, for errors.Is;
// the errors returned wrap them and say more.
var (
	ErrUnknownProtocol = errors.New("unknown protocol")
	ErrUnknownPattern  = errors.New("unknown routing")
	// ErrMulticast is the multicast pattern where it cannot be served.
	ErrMulticast = errors.New("multicast copies HTTP requests")
)

// ParseProtocol parses a protocol as a user writes it (skiff.io/protocol):
// tcp, http, http2 or grpc, in any case; "" is TCP. It knows names only:
// whether a pattern can be served with the protocol is CheckRouting's
// decision.
func ParseProtocol(s string) (Protocol, error) {
	p := Protocol(strings.ToLower(strings.TrimSpace(s)))
	switch {
	case p == "":
		return TCP, nil
	case slices.Contains(protocols, p):
		return p, nil
	}
	return "", fmt.Errorf("%w %q; %s", ErrUnknownProtocol, s, useProtocols)
}

// ParsePattern parses a routing pattern as a user writes it
// (skiff.io/routing, a site file's routing): balanced, closest or
// multicast, in any case; "" is Balanced. It knows names only: whether the
// pattern can be served is CheckRouting's decision.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern(strings.ToLower(strings.TrimSpace(s)))
	switch {
	case p == "":
		return Balanced, nil
	case slices.Contains(patterns, p):
		return p, nil
	}
	return "", fmt.Errorf("%w %q; %s", ErrUnknownPattern, s, usePatterns)
}

// AppProtocol returns the protocol of a Kubernetes Service port's
// appProtocol: the names ParseProtocol accepts, kubernetes.io/http for
// HTTP, h2c and kubernetes.io/h2c for HTTP/2, grpc for gRPC. Anything else
// (https, a database's name, none) is TCP: appProtocol describes the
// application, and skiff carries what it does not route by as TCP.
func AppProtocol(s string) Protocol {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "kubernetes.io/http":
		return HTTP
	case "h2c", "kubernetes.io/h2c":
		return HTTP2
	}
	if p, err := ParseProtocol(s); err == nil {
		return p
	}
	return TCP
}

// CheckRouting reports whether the data plane can serve an address of
// protocol p routed by pattern r: nil, or an error that says why not and
// what to use instead, wrapping ErrUnknownProtocol, ErrUnknownPattern or
// ErrMulticast. "" is the default of each (TCP, Balanced); other values
// must be the names of the constants (ParseProtocol and ParsePattern
// return them).
//
// Balanced and closest are served for every protocol: per connection for
// TCP, per request for HTTP protocols (Protocol.IsHTTP). Multicast copies
// requests and answers with skiff's own document (a JSON list of the
// answers, or 202 Accepted), so it is served for http and http2 only.
func CheckRouting(p Protocol, r Pattern) error {
	if p != "" && !slices.Contains(protocols, p) {
		return fmt.Errorf("%w %q; %s", ErrUnknownProtocol, p, useProtocols)
	}
	switch r {
	case "", Balanced, Closest:
		return nil
	case Multicast:
		switch p {
		case HTTP, HTTP2:
			return nil
		case GRPC:
			return fmt.Errorf("%w and answers with skiff's own document, which a gRPC client cannot read; %s for grpc", ErrMulticast, useUnicast)
		}
		return fmt.Errorf("%w, not %s connections; set the protocol to http or http2, or %s", ErrMulticast, cmp.Or(p, TCP), useUnicast)
	}
	return fmt.Errorf("%w %q; %s", ErrUnknownPattern, r, usePatterns)
}
