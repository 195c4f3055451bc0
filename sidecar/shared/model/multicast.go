package model

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file is the one definition of how a multicast address answers its
// client, and of the text that carries it in site records.

// MulticastMode is how a multicast address answers the client whose
// request it copied to every endpoint.
type MulticastMode string

// Multicast modes.
const (
	// Aggregate answers with one JSON document that lists every
	// endpoint's answer (site, status, headers, body), once all answered
	// or the deadline passed. Any method.
	Aggregate MulticastMode = "aggregate"
	// Events answers 202 Accepted once every copy was handed to an
	// endpoint, with headers that count the copies delivered and failed.
	// POST and PUT only: an event changes something.
	Events MulticastMode = "events"
)

// Bounds of a multicast address's deadline.
const (
	DefaultMulticastTimeout = 5 * time.Second
	MaxMulticastTimeout     = 5 * time.Minute
	minMulticastTimeout     = time.Millisecond
)

// ErrMulticastMode is a multicast mode or deadline that is not valid;
// the errors returned wrap it and say more.
var ErrMulticastMode = errors.New("bad multicast")

const useModes = "use aggregate or events"

// MulticastSpec is how one multicast address answers: its mode and the
// deadline of a request's copies. The zero value is Aggregate with the
// default deadline.
type MulticastSpec struct {
	Mode MulticastMode `json:"mode,omitempty"`
	// Timeout bounds the wait for every copy's answer; 0 is
	// DefaultMulticastTimeout.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Deadline returns the wait for a request's copies.
func (m MulticastSpec) Deadline() time.Duration {
	if m.Timeout <= 0 {
		return DefaultMulticastTimeout
	}
	return m.Timeout
}

// ModeOrDefault returns the mode; "" is Aggregate.
func (m MulticastSpec) ModeOrDefault() MulticastMode {
	if m.Mode == "" {
		return Aggregate
	}
	return m.Mode
}

// ParseMulticast parses a multicast mode and deadline as a user writes
// them (skiff.io/multicast and skiff.io/multicast-timeout, a site file's
// multicast and multicastTimeout): aggregate or events in any case, ""
// being aggregate; a Go duration from 1ms to 5m, "" being 5s.
func ParseMulticast(mode, timeout string) (MulticastSpec, error) {
	var m MulticastSpec
	switch v := MulticastMode(strings.ToLower(strings.TrimSpace(mode))); v {
	case "", Aggregate:
		m.Mode = Aggregate
	case Events:
		m.Mode = Events
	default:
		return MulticastSpec{}, fmt.Errorf("%w mode %q; %s", ErrMulticastMode, mode, useModes)
	}
	m.Timeout = DefaultMulticastTimeout
	if t := strings.TrimSpace(timeout); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d < minMulticastTimeout || d > MaxMulticastTimeout {
			return MulticastSpec{}, fmt.Errorf("%w timeout %q; use a duration from 1ms to 5m, like 5s", ErrMulticastMode, timeout)
		}
		m.Timeout = d
	}
	return m, nil
}

// Text returns m as site records carry it: mode-<milliseconds>ms, such as
// aggregate-5000ms (a DNS label, as every name a record declares).
func (m MulticastSpec) Text() string {
	return fmt.Sprintf("%s-%dms", m.ModeOrDefault(), m.Deadline().Milliseconds())
}

// ParseMulticastText parses Text's form. A mode this version does not
// know is an error (a record's reader uses the default for it).
func ParseMulticastText(s string) (MulticastSpec, error) {
	mode, ms, ok := strings.Cut(s, "-")
	if !ok || !strings.HasSuffix(ms, "ms") {
		return MulticastSpec{}, fmt.Errorf("%w %q: want mode-<n>ms", ErrMulticastMode, s)
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(ms, "ms"), 10, 64)
	if err != nil || n < 1 || time.Duration(n)*time.Millisecond > MaxMulticastTimeout {
		return MulticastSpec{}, fmt.Errorf("%w %q: deadline out of range", ErrMulticastMode, s)
	}
	switch m := MulticastMode(mode); m {
	case Aggregate, Events:
		return MulticastSpec{Mode: m, Timeout: time.Duration(n) * time.Millisecond}, nil
	}
	return MulticastSpec{}, fmt.Errorf("%w mode %q; %s", ErrMulticastMode, mode, useModes)
}
