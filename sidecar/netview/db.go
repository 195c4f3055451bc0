package netview

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// DB is a gateway's link-state database: its own record and the newest
// record it has from every other site. It is safe for concurrent use.
type DB struct {
	self string

	mu      sync.Mutex
	local   Record
	records map[string]Record // other sites only; maps owned by the DB

	// view caches the view of the current records; nil after a change.
	// Readers load it without taking mu.
	view atomic.Pointer[View]
	// changed is closed (and replaced) on every change; see Changed.
	changed chan struct{}
}

// invalidate drops the cached view and wakes the waiters of Changed; the
// caller holds mu.
func (db *DB) invalidate() {
	db.view.Store(nil)
	if db.changed != nil {
		close(db.changed)
		db.changed = nil
	}
}

// Changed returns a channel that is closed at the next change of the
// records (and so, possibly, of the view).
func (db *DB) Changed() <-chan struct{} {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.changed == nil {
		db.changed = make(chan struct{})
	}
	return db.changed
}

// NewDB returns a database for site self, whose gateway started at epoch
// (unix nanoseconds). The local record starts at Seq 1 with no links and no
// addresses.
func NewDB(self string, epoch int64) *DB {
	return &DB{
		self:    self,
		local:   Record{Version: RecordVersion, Site: self, Epoch: epoch, Seq: 1},
		records: map[string]Record{},
	}
}

// SetLocal replaces the local record's links (peer site -> cost) and
// addresses (address -> ready endpoints). Seq is bumped only if the content
// changed. It returns the current local record and whether it changed; the
// caller floods a changed record to its peers.
//
// The content is normalised so that the record is always one that peers
// accept: links to "" or to self are dropped, costs are clamped into
// 1..[MaxCost], and addresses with no ready endpoints are left out (an
// address with zero endpoints is the same as no address).
func (db *DB) SetLocal(links, addresses map[string]int) (Record, bool) {
	next := Record{Links: map[string]int{}, Addresses: map[string]int{}}
	for peer, cost := range links {
		if peer == "" || peer == db.self {
			continue
		}
		next.Links[peer] = min(max(cost, 1), MaxCost)
	}
	for addr, n := range addresses {
		if addr != "" && n > 0 {
			next.Addresses[addr] = n
		}
	}
	next = next.clone() // empty maps as nil, like decoded records

	db.mu.Lock()
	defer db.mu.Unlock()
	next.Routing = db.local.Routing
	if db.local.sameContent(next) {
		return db.local.clone(), false
	}
	db.local.Links, db.local.Addresses = next.Links, next.Addresses
	db.local.Seq++
	db.invalidate()
	return db.local.clone(), true
}

// SetLocalRouting replaces the routing patterns the local record declares
// (address -> pattern; empty patterns are dropped). Like SetLocal it bumps
// Seq only on a change and returns the record and whether it changed.
func (db *DB) SetLocalRouting(routing map[string]string) (Record, bool) {
	next := map[string]string{}
	for addr, p := range routing {
		if addr != "" && p != "" && len(p) <= 32 {
			next[addr] = p
		}
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if maps.Equal(db.local.Routing, cloneMap(next)) {
		return db.local.clone(), false
	}
	db.local.Routing = cloneMap(next)
	db.local.Seq++
	db.invalidate()
	return db.local.clone(), true
}

// Local returns the local record.
func (db *DB) Local() Record {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.local.clone()
}

// Apply stores r if it is newer than the record held for r.Site, and
// reports whether it did; the caller then floods r to its other peers.
//
// Records that claim to be the local site are never stored (the local
// record is set only by [DB.SetLocal]), nor are records Decode would
// refuse.
func (db *DB) Apply(r Record) bool {
	if r.Site == db.self || validate(r) != nil {
		return false
	}
	r = r.clone()
	db.mu.Lock()
	defer db.mu.Unlock()
	old, ok := db.records[r.Site]
	if ok && !r.Newer(old) {
		return false
	}
	db.records[r.Site] = r
	if !ok || !old.sameContent(r) {
		db.invalidate()
	}
	return true
}

// Records returns every record the database holds, the local one included,
// sorted by site: what a gateway sends a newly linked peer.
func (db *DB) Records() []Record {
	db.mu.Lock()
	out := make([]Record, 0, len(db.records)+1)
	out = append(out, db.local.clone())
	for _, r := range db.records {
		out = append(out, r.clone())
	}
	db.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Site, b.Site) })
	return out
}

// Forget drops the record of site (never the local one). The router uses
// it to collect sites that have been unreachable for a long time; if site
// is still out there, its next record brings it back.
func (db *DB) Forget(site string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, ok := db.records[site]; ok {
		delete(db.records, site)
		db.invalidate()
	}
}

// View returns the view of the current records. It is computed on the first
// call after a change and shared by later callers until the next change; the
// returned View must not be modified.
func (db *DB) View() *View {
	if v := db.view.Load(); v != nil {
		return v
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if v := db.view.Load(); v != nil {
		return v
	}
	v := compute(db.local, db.records)
	db.view.Store(v)
	return v
}
