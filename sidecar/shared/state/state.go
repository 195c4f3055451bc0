// Package state keeps what a site's gateway must remember across restarts
// and share between its replicas: the token ledger (the tokens the site
// issued and the sites that redeemed them) and the link certificates
// peers issued to this site. A Linux site keeps it in its data dir
// ([Dir]); a site in Kubernetes keeps it in one Secret of its namespace
// ([Secret]), which the controller and every gateway replica update with
// optimistic concurrency, so that no pod's disk holds anything a new pod
// would miss.
//
// A store holds small values by bucket and name. Names are this site's
// choice (token ids, in hex), checked before use, and never come from a
// peer.
package state

import (
	"errors"
	"fmt"
	"regexp"
)

// Buckets.
const (
	// Tokens holds the ledger: <token id>.yaml per token issued.
	Tokens = "tokens"
	// Links holds the link certificates peers issued to this site:
	// <token id>.crt per token redeemed.
	Links = "links"
)

// Store keeps values by bucket and name.
type Store interface {
	// Get returns the value of name in bucket; nil, nil when there is
	// none.
	Get(bucket, name string) ([]byte, error)
	// List returns every value of bucket by name.
	List(bucket string) (map[string][]byte, error)
	// Update replaces the value of name in bucket with what fn returns
	// for the current one (nil: none), atomically: should another writer
	// change the store in between, fn is called again on its value.
	// fn returning nil deletes the value; an error from fn is returned
	// as it is and nothing changes.
	Update(bucket, name string, fn func(cur []byte) ([]byte, error)) error
	// String names the store in messages (a dir, a Secret).
	String() string
}

// ErrInvalidName is returned for a bucket or name a store refuses.
var ErrInvalidName = errors.New("invalid state name")

var (
	bucketRE = regexp.MustCompile(`^[a-z]{1,32}$`)
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*(\.[a-z0-9_-]+)*$`)
)

// maxName bounds a name: a Secret's data key is at most 253 characters,
// bucket and dot included.
const maxName = 200

// checkName checks a bucket and a name: a bucket is lower-case letters; a
// name is lower-case letters, digits, '-', '_' and single inner dots, so
// it is one path element and, after "<bucket>.", a valid Secret data key.
func checkName(bucket, name string) error {
	if !bucketRE.MatchString(bucket) {
		return fmt.Errorf("bucket %.40q: %w", bucket, ErrInvalidName)
	}
	if len(name) > maxName || !nameRE.MatchString(name) {
		return fmt.Errorf("name %.40q in %s: %w", name, bucket, ErrInvalidName)
	}
	return nil
}
