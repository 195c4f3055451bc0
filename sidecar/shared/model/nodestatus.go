package model

import "time"

// Redirect is what a sidecar's redirect self-check says of its pod's
// redirection (the eBPF programs or nftables rules that send the pod's
// connections to it), as the sidecar reports it to its controller in
// its xDS node metadata (resources.NodeRedirectKey). Empty: the router
// checks no redirection (a gateway, a sidecar without a redirect wait, a
// client of another kind), or has not judged it yet.
type Redirect string

// Redirect states.
const (
	// RedirectVerified: the self-check came back through the redirect.
	RedirectVerified Redirect = "verified"
	// RedirectLost: the pod's connections bypass the sidecar. The
	// self-check failed three times in a row after it had been verified,
	// or it never came back within the sidecar's redirect wait.
	RedirectLost Redirect = "lost"
)

// ParseRedirect returns the state s names, or "" for anything else: the
// state comes from a network peer, and one the reader does not know is
// taken as no state at all.
func ParseRedirect(s string) Redirect {
	switch r := Redirect(s); r {
	case RedirectVerified, RedirectLost:
		return r
	}
	return ""
}

// NodeStatus is what a controller's xDS server knows of one connected
// node: the controller's /status serves a list of them ("nodes"), which
// the CLI reads.
type NodeStatus struct {
	// ID is the node ID as sent; Kind, Site and Name are parsed from it
	// (see ParseNodeID).
	ID   string   `json:"id"`
	Kind NodeKind `json:"kind"`
	Site string   `json:"site"`
	Name string   `json:"name"`
	// Streams is the number of open ADS streams of the node; Delta tells
	// whether one of them is incremental.
	Streams int  `json:"streams"`
	Delta   bool `json:"delta,omitempty"`
	// ConnectedSince is when the node's oldest open stream opened.
	ConnectedSince time.Time `json:"connectedSince"`
	// Acked is the last version the node accepted, by resource type
	// (listener, route, cluster, endpoint). A state-of-the-world client's
	// first request on a new stream counts: it names the version the
	// client holds.
	Acked map[string]string `json:"acked,omitempty"`
	// Rejected holds the node's last rejection of each type, if it has
	// accepted nothing newer since.
	Rejected map[string]Rejection `json:"rejected,omitempty"`
	// Redirect is the redirect state the node reported in the metadata
	// of its newest stream's first request; empty when it reported none
	// (or one ParseRedirect does not know).
	Redirect Redirect `json:"redirect,omitempty"`
}

// Rejection is a response a node rejected (NACK): the version it
// rejected (empty when the nonce was not one the server remembers), the
// response's nonce, and the reason the node gave.
type Rejection struct {
	Version string `json:"version"`
	Nonce   string `json:"nonce"`
	Reason  string `json:"reason"`
}
