// Package policy holds the policy of one link: which network addresses the
// peer may advertise into this site, and which of this site's addresses it
// may reach. Both are allow lists of address patterns; an empty list allows
// every address, which is what a link without a policy does.
//
// A pattern is one of:
//
//   - an address with a port, "backend:8080": that address only;
//   - an address without a port, "backend" or "db.prod": that address and
//     the address with any port ("backend:8080"), so one pattern covers a
//     Linux site's "backend" and a Kubernetes site's "backend:8080";
//   - an address prefix followed by "*", "db-*" or "shop.*": every address
//     whose name (the part before the port) begins with the prefix, with
//     or without a port; the prefix is the beginning of a valid address
//     and has no port;
//   - "*" alone: every address.
//
// Addresses are those [names.CheckAddress] accepts. Patterns come from the
// site file (links[].allow), from the flags of `skiff-router token issue`
// (kept in the token ledger) and from annotations on Kubernetes link and
// token-request Secrets; every source checks them with [CheckPattern] or
// [Parse], so all refuse the same patterns with the same words.
//
// The package imports nothing of skiff's but sidecar/shared/names.
package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// Policy is the policy of one link. The zero Policy allows everything.
type Policy struct {
	// Advertise lists the addresses the peer may advertise into this site;
	// empty: every address.
	Advertise []string `yaml:"advertise,omitempty" json:"advertise,omitempty"`
	// Reach lists the addresses of this site the peer may open streams
	// to; empty: every address.
	Reach []string `yaml:"reach,omitempty" json:"reach,omitempty"`
}

// Wildcard is the pattern that matches every address.
const Wildcard = "*"

// patternRule is what every refusal of a pattern says.
const patternRule = "must be a network address (backend, db.prod or backend:8080; without a port it matches every port), an address prefix followed by * (db-*), or * alone"

// invalidError is a refused pattern or list. It wraps [names.ErrInvalid]
// without repeating its text, so that the message reads well after a
// field name ("links[0].allow.reach[1]: must be ...").
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return names.ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// CheckPattern checks one address pattern. Its error wraps
// [names.ErrInvalid].
func CheckPattern(s string) error {
	if s == Wildcard {
		return nil
	}
	if prefix, ok := strings.CutSuffix(s, Wildcard); ok {
		// A prefix is valid when some address without a port starts with
		// it: itself, or it followed by a letter or by a new label.
		if prefix != "" && !strings.ContainsAny(prefix, ":*") &&
			(names.CheckAddress(prefix) == nil || names.CheckAddress(prefix+"a") == nil || names.CheckAddress(prefix+".a") == nil) {
			return nil
		}
	} else if names.CheckAddress(s) == nil {
		return nil
	}
	return invalidf("%s, got %q", patternRule, clip(s))
}

// Parse reads a comma-separated list of patterns, the form of an
// annotation or a flag: "db-*, backend:8080". Spaces around items are
// trimmed. An empty item is refused, and so is an empty list, which
// would read as "nothing" but means "every address": leave the list out
// instead. Errors wrap [names.ErrInvalid].
func Parse(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, invalidf("must list at least one pattern; leave it out to allow every address")
	}
	items := strings.Split(list, ",")
	out := make([]string, 0, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, invalidf("item %d of %q is empty", i+1, clip(list))
		}
		if err := CheckPattern(item); err != nil {
			return nil, fmt.Errorf("item %d: %w", i+1, err)
		}
		out = append(out, item)
	}
	return out, nil
}

// Validate checks every pattern of both lists; all problems are returned
// together.
func (p Policy) Validate() error {
	var errs []error
	for _, l := range []struct {
		name     string
		patterns []string
	}{{"advertise", p.Advertise}, {"reach", p.Reach}} {
		for i, pat := range l.patterns {
			if err := CheckPattern(pat); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", l.name, i, err))
			}
		}
	}
	return errors.Join(errs...)
}

// MayAdvertise reports whether the peer may advertise address into this
// site.
func (p Policy) MayAdvertise(address string) bool { return allows(p.Advertise, address) }

// MayReach reports whether the peer may open a stream to address of this
// site.
func (p Policy) MayReach(address string) bool { return allows(p.Reach, address) }

// IsZero reports a policy with neither list: every address allowed.
func (p Policy) IsZero() bool { return len(p.Advertise) == 0 && len(p.Reach) == 0 }

// Equal reports whether p and q hold the same lists (nil and empty are
// the same).
func (p Policy) Equal(q Policy) bool {
	return slices.Equal(p.Advertise, q.Advertise) && slices.Equal(p.Reach, q.Reach)
}

// String returns the policy for logs: "advertise=db-*,backend reach=all".
func (p Policy) String() string {
	return "advertise=" + listString(p.Advertise) + " reach=" + listString(p.Reach)
}

func listString(l []string) string {
	if len(l) == 0 {
		return "all"
	}
	return strings.Join(l, ",")
}

func allows(patterns []string, address string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, pat := range patterns {
		if Match(pat, address) {
			return true
		}
	}
	return false
}

// Match reports whether pattern matches address (see the package comment).
// A pattern that [CheckPattern] refuses matches nothing but itself.
func Match(pattern, address string) bool {
	if pattern == Wildcard {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, Wildcard); ok {
		return !strings.Contains(prefix, ":") && strings.HasPrefix(address, prefix)
	}
	if address == pattern {
		return true
	}
	// A pattern without a port matches the address with any port.
	return !strings.Contains(pattern, ":") && len(address) > len(pattern) &&
		address[len(pattern)] == ':' && strings.HasPrefix(address, pattern)
}

// clip shortens a refused pattern for its error message.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
