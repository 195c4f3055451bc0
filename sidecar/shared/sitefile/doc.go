// Package sitefile reads, validates and edits a site file: the YAML
// description of a Linux site that `skiff-router gateway --site-file` and
// `skiff-router token issue --site-file` start from.
//
// A site file names the site, says where its data (CA, certificates, token
// ledger) lives, whether and where other sites may dial it (linkAccess),
// which tokens it dials (links), and its local listeners, connectors and
// routing patterns. docs/site-file.md is the user-facing reference.
//
// [Parse] is strict: unknown or duplicate keys, values of the wrong type and
// invalid values are all reported, each as an [*Error] that names the file,
// the line and the field ("east.yaml:12: links[0].cost: must be >= 1, got
// 0"). Several problems come back together as an [errors.Join] of them, in
// line order; use [errors.As] to get at one.
//
// Relative paths in the file (dataDir, link tokens) are resolved against
// the directory of the site file, never the working directory. Parse does
// no I/O beyond making the file's path absolute; [Load] reads the file.
//
// [AddLink] and [RemoveLink] edit a site file's links through yaml.v3's
// node tree, keeping its comments (`skiff link create` and `link delete`
// with --site-file); [Replace] validates the result and writes it
// atomically, so that a running gateway, which reloads the file when it
// changes ([Watch]), reads the old file or the new one.
package sitefile
