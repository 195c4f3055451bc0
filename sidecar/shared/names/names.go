// Package names validates the names skiff takes from files and from the
// network: site names, router names and network addresses. It is the one
// place these rules live; the site file, tokens, hellos, stream headers and
// site records all call it, so every path refuses the same names with the
// same words. It imports nothing of skiff's.
//
// A name that passes is safe to log and to compare, but is never used to
// build a file path.
package names

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every error of this package.
var ErrInvalid = errors.New("invalid name")

// MaxAddress is the longest network address: a DNS-1123 subdomain (253)
// and a port.
const MaxAddress = 253 + len(":65535")

// CheckSite checks a site name: a DNS-1123 label.
func CheckSite(s string) error {
	if !IsLabel(s) {
		return fmt.Errorf("site name must be a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit), got %q: %w", clip(s), ErrInvalid)
	}
	return nil
}

// CheckRouter checks a router name (a gateway replica's or a sidecar's
// pod): a DNS-1123 subdomain of at most 253 characters, optionally
// prefixed by a namespace and '/' as in "shop/frontend-5d8f-x2x".
func CheckRouter(s string) error {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		name, ns = ns, ""
	}
	if (found && !IsLabel(ns)) || !isSubdomain(name) {
		return fmt.Errorf("router name must be a DNS-1123 subdomain, optionally after a namespace and '/', got %q: %w", clip(s), ErrInvalid)
	}
	return nil
}

// CheckAddress checks a network address: a DNS-1123 subdomain such as
// "backend" or "db.prod", optionally with a port ("backend:8080", the form
// of a Kubernetes site's service port).
func CheckAddress(s string) error {
	if s == "" {
		return fmt.Errorf("address must not be empty: %w", ErrInvalid)
	}
	name := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		name = s[:i]
		if p, err := strconv.Atoi(s[i+1:]); err != nil || p < 1 || p > 65535 || s[i+1] == '+' || s[i+1] == '0' {
			return fmt.Errorf("address must be a DNS-1123 subdomain, optionally with a port (e.g. backend or backend:8080), got %q: %w", clip(s), ErrInvalid)
		}
	}
	if !isSubdomain(name) {
		return fmt.Errorf("address must be a DNS-1123 subdomain, optionally with a port (lowercase letters, digits, '-' and '.', at most 253 characters, e.g. backend, db.prod or backend:8080), got %q: %w", clip(s), ErrInvalid)
	}
	return nil
}

// IsLabel reports a DNS-1123 label: 1 to 63 lowercase letters, digits and
// '-', starting and ending with a letter or digit.
func IsLabel(s string) bool { return isLabel(s, false) }

// IsHostLabel is IsLabel that also allows upper case, for DNS host names.
func IsHostLabel(s string) bool { return isLabel(s, true) }

// IsSubdomain reports a DNS-1123 subdomain: dot-separated labels, at most
// 253 characters (the names of most Kubernetes objects).
func IsSubdomain(s string) bool { return isSubdomain(s) }

func isSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isLabel(label, false) {
			return false
		}
	}
	return true
}

func isLabel(s string, upper bool) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case upper && 'A' <= c && c <= 'Z':
		default:
			return false
		}
	}
	return true
}

// clip shortens what a peer sent before it goes into an error message, so a
// 16 MiB name cannot make a 16 MiB log line.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
