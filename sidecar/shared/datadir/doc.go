// Package datadir keeps a Linux site's data dir (docs/site-file.md, "The
// data dir"): it creates the dir, or tightens it, to 0700 ([Secure]),
// takes back the dirs a failed command created ([Missing],
// [RemoveCreated]), issues tokens into the site's ledger ([IssueToken],
// what `skiff-router token issue` and `skiff token create --site-file`
// run), and keeps the copies of the link tokens the site dials in
// links/ ([SaveLinkToken], what `skiff link create --site-file` writes).
//
// Every file it writes holds a key or a ledger entry: mode 0600, written
// to a temporary file beside its place and renamed (or linked) into it,
// so that a reader sees the whole file or none.
package datadir
