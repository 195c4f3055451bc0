// Package netview is a gateway's link-state database: the site records that
// the gateways of a skiff network flood to each other, and the view of the
// network computed from them.
//
// Every gateway originates one [Record] describing its site: the links it has
// up (peer site and cost) and the network addresses it has ready endpoints
// for. A record is versioned by (Epoch, Seq): Epoch is the gateway's start
// time, so a restarted gateway supersedes whatever its previous incarnation
// flooded, and Seq counts changes within an epoch. Records are flooded on
// change, and re-signed with a new Seq every [DefaultRefresh] so that
// they do not age out ([DB.Expire]).
//
// Records travel signed by their site's key ([Sign], [Open]); transit
// gateways forward the signed bytes unchanged and every one verifies
// them. The first key a site name is seen with holds the name: a record
// or a link ([DB.Bind]) for that name with another key is refused with
// [ErrKeyConflict]. A site replaces its key by rolling over: while it
// rotates, its records signed by the new key carry the previous key's
// endorsement of it ([Record.Prev], [Endorse]), which moves the name to
// the new key; the previous key speaks for the site until the rotation
// finishes ([DB.SetKey], [DB.KeysOf], [DB.Superseded]).
//
// A [DB] stores the newest record per site and computes a [View] from them:
// least-cost routes (Dijkstra, deterministic tie-breaking) from the local
// site to every reachable site, and for every address the reachable sites
// that serve it. A link counts only when both ends list each other, as in
// OSPF's two-way check, so a dead peer's stale record cannot keep a path
// alive; a site with no path left drops out of the view at once.
//
// Gateways also flood signed traffic reports ([Traffic], [SignTraffic],
// [OpenTraffic]): what each moved over its last interval, for consoles.
// The DB keeps the newest per node it holds a record of
// ([DB.ApplyTraffic], [DB.Traffic]); they are not part of the view.
//
// The package does no I/O, starts no goroutines and logs nothing: the router
// moves records over links with [Sign] and [Open] and asks the DB what
// changed.
package netview
