package netview

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"sync"
)

// testKeys holds one key per site name, made on first use.
var testKeys sync.Map // site -> *ecdsa.PrivateKey

func testKey(site string) *ecdsa.PrivateKey {
	if k, ok := testKeys.Load(site); ok {
		return k.(*ecdsa.PrivateKey)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	actual, _ := testKeys.LoadOrStore(site, k)
	return actual.(*ecdsa.PrivateKey)
}

func testKeyID(site string) string {
	id, err := KeyID(&testKey(site).PublicKey)
	if err != nil {
		panic(err)
	}
	return id
}

// newDB returns a DB for self that signs with self's test key.
func newDB(self string, epoch int64, opts ...Option) *DB {
	return NewDB(self, epoch, append([]Option{WithKey(testKey(self))}, opts...)...)
}

// apply signs r with its site's test key and applies it; a record that
// cannot be signed or is refused counts as not applied.
func apply(db *DB, r Record) bool {
	s, err := Sign(r, testKey(r.Site))
	if err != nil {
		return false
	}
	ok, _ := db.Apply(s)
	return ok
}
