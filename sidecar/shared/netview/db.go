package netview

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// Ages of records and of the keys that hold site names.
const (
	// DefaultRefresh is how often a gateway signs its record again with a
	// new Seq when nothing changed, so that its peers' copies stay young.
	DefaultRefresh = 2 * time.Minute
	// DefaultMaxAge is how long a record is kept without a newer one from
	// its site: five missed refreshes.
	DefaultMaxAge = 5 * DefaultRefresh
	// BindingTTL is how long a site's key keeps holding the site's name
	// after the DB last held a record of the site or saw it on a link.
	BindingTTL = 24 * time.Hour
	// MaxSites bounds the records (one per gateway) and the name
	// bindings (one per site) a DB holds.
	MaxSites = 1 << 16
)

var (
	// ErrKeyConflict reports a record or a link whose key differs from the
	// key that holds the site name. The holder keeps the name.
	ErrKeyConflict = errors.New("site name held by another key")
	// ErrTooManySites reports a record refused because the DB holds
	// MaxSites sites.
	ErrTooManySites = errors.New("too many sites")
)

// DB is a gateway's link-state database: its own record, the newest
// record it has from every other node (the gateways of other sites, and
// the other gateways of its own site), and which key holds each site
// name. It is safe for concurrent use.
//
// Names are held first come, first served: the first key a site name is
// seen with (on a link, or in a validly signed record) holds it; a record
// or a link with another key for that name is refused with
// [ErrKeyConflict] and never replaces the holder. A binding ends
// [BindingTTL] after the site was last seen, so a site that left for good
// frees its name.
//
// A site replaces its key (a rotation of its CA) by rolling over: its
// records signed by the new key carry the previous key's endorsement of it
// (Record.Prev, see [Endorse]). A record whose endorsement is by the key
// that holds the name moves the name to the new key; the previous key
// still speaks for the site (its gateways that still sign with it, links
// proved with it) until a record by the new key comes without an
// endorsement: the rotation finished. The local site's names are held
// the same way, except that the keys the DB was given (its signing key
// and previous key, or a sidecar's [WithSiteKeyID]) always speak for it.
type DB struct {
	self       string
	now        func() time.Time
	prevKey    *ecdsa.PrivateKey // WithPrevKey, for NewDB
	siteKeyIDs []string          // WithSiteKeyID, for NewDB

	mu     sync.Mutex
	key    *ecdsa.PrivateKey // signs the local record; nil: it is never sent
	keyID  string            // key's KeyID, or the site's key given a DB without one
	prevID string            // the site's previous key during a rotation, else ""
	keyErr error             // why the local record cannot be signed, if it cannot
	// own holds the local site's name: the keys above, moved on by the
	// rollovers in the records of the site's other gateways.
	own         binding
	local       Record
	localSigned *Signed          // local at its current Seq; nil until asked
	mirrored    *Signed          // a sidecar's: its gateway's record, the local one (Mirror)
	records     map[string]*held // other nodes only, by node ID
	keys        map[string]*binding
	conflicts   []Conflict // the latest, at most maxConflicts
	// traffic holds the latest traffic report of other nodes that have
	// a record here (traffic.go); trafficSeq numbers the local node's.
	traffic    map[string]*heldTraffic
	trafficSeq uint64

	// view caches the view of the current records; nil after a change.
	// Readers load it without taking mu.
	view atomic.Pointer[View]
	// changed is closed (and replaced) on every change; see Changed.
	changed chan struct{}
}

// maxConflicts bounds the name conflicts a DB remembers for its Document.
const maxConflicts = 16

// Conflict is a record or link refused because another key holds its
// site's name: a site forged, or two sites use one name. The Document
// lists the latest, so that the controller can raise a Warning Event.
type Conflict struct {
	Site   string    `json:"site"`
	Key    string    `json:"key"`    // fingerprint of the refused key
	HeldBy string    `json:"heldBy"` // fingerprint of the key that holds the name
	Count  int       `json:"count,omitzero"`
	Last   time.Time `json:"last,omitzero"`
}

// held is a stored record of another node.
type held struct {
	Signed
	at time.Time // when the newest record of the site arrived
}

// binding is the key that holds a site name and, while the site rotates
// its key, the previous key, which still speaks for the site.
type binding struct {
	key, prev string
	lastSeen  time.Time
}

// Option configures a DB.
type Option func(*DB)

// WithKey makes the DB sign its local record with key (the site's key):
// what a gateway needs to send its record. The local record's Key is set
// to key's [KeyID].
func WithKey(key *ecdsa.PrivateKey) Option { return func(db *DB) { db.key = key } }

// WithPrevKey tells a DB with [WithKey] that its site is rotating its key
// from prev to the key it signs with: the local record carries prev's
// endorsement of that key (Record.Prev), and records and links of the
// site by prev are held as the site's. Without WithKey it does nothing.
func WithPrevKey(prev *ecdsa.PrivateKey) Option { return func(db *DB) { db.prevKey = prev } }

// WithSiteKeyID gives a DB that signs nothing (a sidecar's) the site's
// key ([KeyID] form), so that it holds the records of its site's gateways
// to it. During a rotation of the site's key, a second ID names the
// previous key, whose gateways' records are held too. Empty and repeated
// IDs and any after the second are ignored, and so is the option on a DB
// with [WithKey].
func WithSiteKeyID(keyIDs ...string) Option {
	return func(db *DB) { db.siteKeyIDs = keyIDs }
}

// WithRouter names the gateway in the local record (Record.Router).
func WithRouter(name string) Option { return func(db *DB) { db.local.Router = name } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(db *DB) { db.now = now } }

// NewDB returns a database for site self, whose gateway started at epoch
// (unix nanoseconds). The local record starts at Seq 1 with no links and no
// addresses.
func NewDB(self string, epoch int64, opts ...Option) *DB {
	db := &DB{
		self:    self,
		now:     time.Now,
		local:   Record{Version: RecordVersion, Site: self, Epoch: epoch, Seq: 1},
		records: map[string]*held{},
		keys:    map[string]*binding{},
	}
	for _, o := range opts {
		o(db)
	}
	if db.key != nil {
		// A P-256 key always encodes and endorses; otherwise LocalSigned
		// reports the error.
		db.keyID, db.prevID, db.local.Prev, db.keyErr = signingKeys(self, db.key, db.prevKey)
		db.local.Key = db.keyID
	} else {
		var ids []string
		for _, id := range db.siteKeyIDs {
			if id != "" && !slices.Contains(ids, id) && len(ids) < 2 {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			db.keyID = ids[0]
		}
		if len(ids) > 1 {
			db.prevID = ids[1]
		}
	}
	db.prevKey, db.siteKeyIDs = nil, nil
	db.own = binding{key: db.keyID, prev: db.prevID}
	return db
}

// signingKeys returns the [KeyID]s of a signing key and of the previous
// key (none when prev is nil or key itself), and prev's endorsement of
// key for site.
func signingKeys(site string, key, prev *ecdsa.PrivateKey) (keyID, prevID string, endorsement *Rollover, err error) {
	if key.Curve != elliptic.P256() {
		return "", "", nil, fmt.Errorf("site %s: signing key is not ECDSA P-256", site)
	}
	keyID, err = KeyID(&key.PublicKey)
	if err != nil || prev == nil {
		return keyID, "", nil, err
	}
	if prevID, err = KeyID(&prev.PublicKey); err != nil || prevID == keyID {
		return keyID, "", nil, err
	}
	if endorsement, err = Endorse(site, keyID, prev); err != nil {
		return keyID, "", nil, fmt.Errorf("site %s: %w", site, err)
	}
	return keyID, prevID, endorsement, nil
}

// SetKey replaces the key the DB signs its local record with: the site
// started rotating its key from prev to key, or finished (prev nil). The
// local record's Key and Prev (prev's endorsement of key) change, its Seq
// is bumped and the view invalidated ([DB.Changed]); the caller floods
// the record. From then on key and prev are the local site's keys: the
// site's records and links by any other key are refused, unless a sibling
// gateway rolls over to it with key's endorsement. A prev equal to key is
// no previous key.
func (db *DB) SetKey(key, prev *ecdsa.PrivateKey) error {
	if key == nil {
		return fmt.Errorf("set key of site %s: no key", db.self)
	}
	keyID, prevID, endorsement, err := signingKeys(db.self, key, prev)
	if err != nil {
		return fmt.Errorf("set key: %w", err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.key, db.keyID, db.prevID, db.keyErr = key, keyID, prevID, nil
	db.local.Key, db.local.Prev = keyID, endorsement
	db.own = binding{key: keyID, prev: prevID, lastSeen: db.now()}
	db.bumpLocked()
	db.invalidate()
	return nil
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

// SetLocal replaces the local record's links (peer node -> cost) and
// addresses (address -> ready endpoints). Seq is bumped only if the content
// changed. It returns the current local record and whether it changed; the
// caller floods a changed record to its peers.
//
// The content is normalised so that the record is always one that peers
// accept: links to "" or to this node are dropped, costs are clamped
// into 1..[MaxCost] (0..MaxCost for siblings), and addresses with no ready
// endpoints are left out (an address with zero endpoints is the same as
// no address).
func (db *DB) SetLocal(links, addresses map[string]int) (Record, bool) {
	next := Record{Links: map[string]int{}, Addresses: map[string]int{}}
	db.mu.Lock()
	self := db.local.Node()
	db.mu.Unlock()
	for peer, cost := range links {
		if peer == "" || peer == self {
			continue
		}
		low := 1
		if SiteOf(peer) == db.self {
			low = 0
		}
		next.Links[peer] = min(max(cost, low), MaxCost)
	}
	for addr, n := range addresses {
		if addr != "" && n > 0 {
			next.Addresses[addr] = min(n, MaxEndpoints)
		}
	}
	next = next.clone() // empty maps as nil, like decoded records

	db.mu.Lock()
	defer db.mu.Unlock()
	next.Routing, next.Protocols, next.Multicast = db.local.Routing, db.local.Protocols, db.local.Multicast
	if db.local.sameContent(next) {
		return db.local.clone(), false
	}
	db.local.Links, db.local.Addresses = next.Links, next.Addresses
	db.bumpLocked()
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
	return db.setDeclared(&db.local.Routing, next)
}

// SetLocalProtocols replaces the protocols the local record declares
// (address -> protocol). Protocols are written in their canonical form
// ([model.ParseProtocol]'s); tcp, which goes without saying, and names
// ParseProtocol does not know are dropped, and so are empty addresses.
// Like SetLocal it bumps Seq only on a change and returns the record and
// whether it changed.
func (db *DB) SetLocalProtocols(protocols map[string]string) (Record, bool) {
	next := map[string]string{}
	for addr, p := range protocols {
		parsed, err := model.ParseProtocol(p)
		if addr != "" && err == nil && parsed != model.TCP {
			next[addr] = string(parsed)
		}
	}
	return db.setDeclared(&db.local.Protocols, next)
}

// SetLocalMulticast replaces the multicast modes the local record
// declares (address -> [model.MulticastSpec.Text]). They are written in
// their canonical form (the Text of what [model.ParseMulticastText]
// reads); values it cannot parse, and empty addresses, are dropped.
// Defaults (aggregate-5000ms) are kept: a site that declares them holds
// its address's mode against farther sites declaring another. Like
// SetLocal it bumps Seq only on a change and returns the record and
// whether it changed.
func (db *DB) SetLocalMulticast(multicast map[string]string) (Record, bool) {
	next := map[string]string{}
	for addr, m := range multicast {
		parsed, err := model.ParseMulticastText(m)
		if addr != "" && err == nil {
			next[addr] = parsed.Text()
		}
	}
	return db.setDeclared(&db.local.Multicast, next)
}

// setDeclared replaces one of the local record's declarations (*field,
// under db.mu) with next, bumping Seq only on a change; it returns the
// record and whether it changed.
func (db *DB) setDeclared(field *map[string]string, next map[string]string) (Record, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if maps.Equal(*field, next) {
		return db.local.clone(), false
	}
	*field = cloneMap(next)
	db.bumpLocked()
	db.invalidate()
	return db.local.clone(), true
}

// SetLocalDraining sets the local record's Draining. Like SetLocal it
// bumps Seq only on a change and returns the record and whether it
// changed.
func (db *DB) SetLocalDraining(draining bool) (Record, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.local.Draining == draining {
		return db.local.clone(), false
	}
	db.local.Draining = draining
	db.bumpLocked()
	db.invalidate()
	return db.local.clone(), true
}

// Mirror makes s, a signed record of a gateway of this site, the local
// record: a sidecar's view is rooted at the gateway it is linked to, and
// takes each record of it that is newer than the one it has. A record of
// another gateway than the current one moves the root there, in one
// step with its content, so that no view is ever made of the new name
// and the old content, or of the new name and no content. The previous
// gateway's record is then held like any other (the routes through it
// stay until it is replaced or ages out), and a held record of the new
// one goes. It reports whether the local record changed.
func (db *DB) Mirror(s Signed) (bool, error) {
	if err := validate(s.Record); err != nil {
		return false, err
	}
	if s.Site != db.self {
		return false, fmt.Errorf("record of %s: a sidecar of %s mirrors a gateway of its own site: %w", s.Node(), db.self, ErrInvalidRecord)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.bindLocked(s.Site, s.Key, &s.Record); err != nil {
		return false, err
	}
	prev := db.mirrored
	switch {
	case prev != nil && prev.Node() == s.Node():
		if !s.Newer(prev.Record) {
			return false, nil
		}
	case prev != nil:
		if h, ok := db.records[prev.Node()]; !ok || prev.Newer(h.Record) {
			db.records[prev.Node()] = &held{Signed: *prev, at: db.now()}
		}
	}
	s.Record = s.Record.clone()
	db.mirrored = &s
	delete(db.records, s.Node())
	if db.local.Router == s.Router && db.local.sameContent(s.Record) {
		return false, nil
	}
	db.local.Router = s.Router
	db.local.Links, db.local.Addresses = cloneMap(s.Links), cloneMap(s.Addresses)
	db.local.Routing, db.local.Protocols = cloneMap(s.Routing), cloneMap(s.Protocols)
	db.local.Multicast, db.local.Draining = cloneMap(s.Multicast), s.Draining
	db.bumpLocked()
	db.invalidate()
	return true, nil
}

// Refresh bumps the local record's Seq without changing its content, so
// that a re-signed copy supersedes the one peers hold; the router floods
// it every [DefaultRefresh]. It returns the record.
func (db *DB) Refresh() Record {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.bumpLocked()
	return db.local.clone()
}

func (db *DB) bumpLocked() {
	db.local.Seq++
	db.localSigned = nil
}

// Local returns the local record.
func (db *DB) Local() Record {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.local.clone()
}

// LocalSigned returns the local record signed with the DB's key (made
// once per Seq).
func (db *DB) LocalSigned() (Signed, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.localSignedLocked()
}

func (db *DB) localSignedLocked() (Signed, error) {
	if db.localSigned != nil {
		return *db.localSigned, nil
	}
	if db.key == nil {
		return Signed{}, fmt.Errorf("site %s: no key to sign its record", db.self)
	}
	if db.keyErr != nil {
		return Signed{}, db.keyErr
	}
	s, err := Sign(db.local, db.key)
	if err != nil {
		return Signed{}, err
	}
	db.localSigned = &s
	return s, nil
}

// Bind records that site holds key, as a link to the site proved (its
// certificate or its token's CA). It fails with [ErrKeyConflict] unless
// key speaks for the site: the key that holds the name (the first one
// seen, or the one a rollover moved it to), the previous key while the
// site rotates, or for the local site one of the keys the DB was given.
// A link never moves a name to another key.
func (db *DB) Bind(site, key string) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.bindLocked(site, key, nil)
}

// HolderOf returns the key that holds site's name ("" if none): for the
// local site of a DB with a key, the key it signs with.
func (db *DB) HolderOf(site string) string {
	db.mu.Lock()
	defer db.mu.Unlock()
	if site == db.self && db.key != nil {
		return db.keyID
	}
	if b := db.bindingLocked(site); b != nil {
		return b.key
	}
	return ""
}

// KeysOf returns the keys that speak for site, the one [DB.HolderOf]
// returns first, then the previous one while the site rotates its key
// (for the local site, the keys the DB was given come on top of those of
// its gateways' rollovers). It returns nil for a site it knows no key of.
func (db *DB) KeysOf(site string) []string {
	db.mu.Lock()
	defer db.mu.Unlock()
	var keys []string
	add := func(k string) {
		if k != "" && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	if site == db.self && db.key != nil {
		add(db.keyID)
	}
	if b := db.bindingLocked(site); b != nil {
		add(b.key)
		add(b.prev)
	}
	if site == db.self {
		add(db.keyID)
		add(db.prevID)
	}
	return keys
}

// Superseded reports whether key was site's key and a rollover (a record
// by another key that key endorsed) replaced it while the rotation is
// not finished; it then returns the key that replaced it.
func (db *DB) Superseded(site, key string) (string, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if b := db.bindingLocked(site); b != nil && key != "" && key == b.prev && b.key != key {
		return b.key, true
	}
	return "", false
}

// bindingLocked returns the binding of site's name, nil if none: the
// local site's is nil only in a DB given no key of its site.
func (db *DB) bindingLocked(site string) *binding {
	if site == db.self {
		if db.own.key == "" {
			return nil
		}
		return &db.own
	}
	return db.keys[site]
}

// ownKeyLocked reports whether key is one the DB was given for its site.
func (db *DB) ownKeyLocked(site, key string) bool {
	return site == db.self && key != "" && (key == db.keyID || key == db.prevID)
}

// bindLocked checks that key speaks for site, records that the site was
// seen, and binds a name seen for the first time. r is the record signed
// by key, nil for a link; its endorsement (verified by Open) may move the
// name to key, and a record of the current key without one ends the
// site's rotation. A move or an end changes the view: the router reacts.
func (db *DB) bindLocked(site, key string, r *Record) error {
	if key == "" {
		return fmt.Errorf("site %s: no key: %w", site, ErrSignature)
	}
	now := db.now()
	b := db.bindingLocked(site)
	if b == nil {
		if site == db.self {
			db.conflictLocked(site, key, "", now)
			return fmt.Errorf("key %s claims this site's own name %q (held by no key): %w", Fingerprint(key), site, ErrKeyConflict)
		}
		if len(db.keys) >= MaxSites {
			return fmt.Errorf("site %q: this gateway knows %d sites already: %w", site, MaxSites, ErrTooManySites)
		}
		b = &binding{key: key, lastSeen: now}
		if r != nil && r.Prev != nil {
			// First seen while it rotates: its gateways that still
			// sign with the previous key are the site's too.
			b.prev = r.Prev.Key
		}
		db.keys[site] = b
		return nil
	}
	switch {
	case key == b.key:
		if r != nil && r.Prev == nil && b.prev != "" && !db.ownKeyLocked(site, b.prev) {
			// The rotation finished: the previous key no longer speaks
			// for the site (for the local site, unless it is one of
			// the DB's own keys: it ends with SetKey).
			b.prev = ""
			db.invalidate()
		}
	case key == b.prev, db.ownKeyLocked(site, key):
	case r != nil && r.Prev != nil && r.Prev.Key == b.key:
		b.key, b.prev = key, b.key
		db.invalidate()
	default:
		db.conflictLocked(site, key, b.key, now)
		if site == db.self {
			return fmt.Errorf("key %s claims this site's own name %q (held by %s): %w", Fingerprint(key), site, Fingerprint(b.key), ErrKeyConflict)
		}
		return fmt.Errorf("key %s claims site %q, held by key %s: %w", Fingerprint(key), site, Fingerprint(b.key), ErrKeyConflict)
	}
	b.lastSeen = now
	return nil
}

// conflictLocked remembers a refused key for a held name; a new pair
// changes the Document (and wakes its readers).
func (db *DB) conflictLocked(site, key, holder string, now time.Time) {
	c := Conflict{Site: site, Key: Fingerprint(key), HeldBy: Fingerprint(holder), Count: 1, Last: now}
	for i := range db.conflicts {
		if o := &db.conflicts[i]; o.Site == c.Site && o.Key == c.Key {
			o.Count++
			o.Last = now
			return
		}
	}
	db.conflicts = append(db.conflicts, c)
	if len(db.conflicts) > maxConflicts {
		db.conflicts = db.conflicts[1:]
	}
	db.invalidate()
}

// Conflicts returns the latest name conflicts, oldest first.
func (db *DB) Conflicts() []Conflict {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(db.conflicts)
}

// Apply stores s if it is newer than the record held for its node, and
// reports whether it did; the caller then floods s to its other peers. s
// must come from [Open] (its signature checked).
//
// A record of a site whose name another key holds is refused with
// [ErrKeyConflict], and the held record stays; one whose endorsement
// (Prev) is by the key that holds the name moves the name to its key (see
// [DB]). The local node's own records (flooded back around a loop) are
// ignored; the records of the site's other gateways are held like any
// other; a record that claims the local site with another key is an
// ErrKeyConflict.
func (db *DB) Apply(s Signed) (bool, error) {
	if err := validate(s.Record); err != nil {
		return false, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.bindLocked(s.Site, s.Key, &s.Record); err != nil {
		return false, err
	}
	node := s.Node()
	if node == db.local.Node() {
		return false, nil
	}
	old, ok := db.records[node]
	if ok && !s.Newer(old.Record) {
		return false, nil
	}
	if !ok && len(db.records) >= MaxSites {
		return false, fmt.Errorf("node %q: this gateway holds %d records already: %w", node, MaxSites, ErrTooManySites)
	}
	s.Record = s.Record.clone()
	db.records[node] = &held{Signed: s, at: db.now()}
	if !ok || !old.sameContent(s.Record) {
		db.invalidate()
	}
	return true, nil
}

// Record returns node's record (the local one, or one held), and false
// if there is none.
func (db *DB) Record(node string) (Record, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if node == db.local.Node() {
		return db.local.clone(), true
	}
	if h, ok := db.records[node]; ok {
		return h.Record.clone(), true
	}
	return Record{}, false
}

// Records returns every record the database holds, the local one included,
// sorted by node.
func (db *DB) Records() []Record {
	db.mu.Lock()
	out := make([]Record, 0, len(db.records)+1)
	out = append(out, db.local.clone())
	for _, h := range db.records {
		out = append(out, h.Record.clone())
	}
	db.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Node(), b.Node()) })
	return out
}

// Signed returns the wire forms of every record the database holds, the
// local one first when the DB has a key: what a gateway sends a newly
// linked peer.
func (db *DB) Signed() ([]Signed, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	out := make([]Signed, 0, len(db.records)+1)
	if db.key != nil {
		local, err := db.localSignedLocked()
		if err != nil {
			return nil, err
		}
		out = append(out, local)
	}
	for _, h := range db.records {
		out = append(out, h.Signed)
	}
	return out, nil
}

// Forget drops the record of node (never the local one). The router uses
// it to collect nodes that have been unreachable for a long time; if the
// node is still out there, its next record brings it back. The key that
// holds its site's name keeps it for [BindingTTL].
func (db *DB) Forget(node string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	delete(db.traffic, node)
	if _, ok := db.records[node]; ok {
		delete(db.records, node)
		db.invalidate()
	}
}

// Expire drops records that no newer record replaced for maxAge, and name
// bindings of sites neither held nor seen for [BindingTTL]. It returns the
// nodes whose records it dropped.
func (db *DB) Expire(maxAge time.Duration) []string {
	now := db.now()
	db.mu.Lock()
	defer db.mu.Unlock()
	var dropped []string
	for node, h := range db.records {
		if now.Sub(h.at) > maxAge {
			delete(db.records, node)
			delete(db.traffic, node)
			dropped = append(dropped, node)
		}
	}
	held := map[string]bool{}
	for _, h := range db.records {
		held[h.Site] = true
	}
	for site, b := range db.keys {
		if !held[site] && now.Sub(b.lastSeen) > BindingTTL {
			delete(db.keys, site)
		}
	}
	if len(dropped) > 0 {
		db.invalidate()
	}
	slices.Sort(dropped)
	return dropped
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
	recs := make(map[string]Record, len(db.records))
	for node, h := range db.records {
		recs[node] = h.Record
	}
	v := compute(db.local, recs)
	db.view.Store(v)
	return v
}
