package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/datadir"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// This file holds token create, link create and link delete on a Linux
// site (--site-file): they issue tokens into the site's data dir and edit
// the links of its site file, which its running gateway reloads by
// itself (sitefile.Watch).

// linuxTokenCreate issues a link token of the site in --site-file into
// FILE, as `skiff-router token issue` does (datadir.IssueToken), and
// records it in the site's ledger: its gateway admits it at once.
func linuxTokenCreate(_ context.Context, e *env, args []string) error {
	ttl, err := tokenLimits(e)
	if err != nil {
		return err
	}
	if e.str("name") != "" {
		return usageError{"--name names a Kubernetes site's token request; a Linux site's tokens have no name: leave it out"}
	}
	file := args[0]
	tok, err := datadir.IssueToken(datadir.TokenOptions{SiteFile: e.opts.siteFile, Out: file, Expires: ttl, Redemptions: e.num("uses")}, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "%s\nOn the other site: %s link create %s --site-file ITS-SITE-FILE (or -n NAMESPACE for a Kubernetes site)\n",
		tokenWritten(tok, file, e.num("uses")), e.name, file)
	return nil
}

// readSite reads and loads the site file of --site-file, and returns its
// contents too, for an edit (sitefile.Replace).
func readSite(e *env) (*sitefile.Site, []byte, error) {
	data, err := os.ReadFile(e.opts.siteFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read site file: %w", err)
	}
	site, err := sitefile.Parse(e.opts.siteFile, data)
	if err != nil {
		return nil, nil, err
	}
	return site, data, nil
}

// linuxLinkCreate links the site of --site-file to the site that issued
// the token in FILE: it copies the token into the site's data dir
// (links/NAME.token.yaml) and adds it to the site file's links; the
// running gateway reloads the file and dials. With the gateway reachable
// at --admin, it waits (up to --timeout) until the link is up.
func linuxLinkCreate(ctx context.Context, e *env, args []string) error {
	fileName, data, tok, err := readTokenFile(args[0])
	if err != nil {
		return err
	}
	name, cost, err := linkOptions(e, fileName, tok)
	if err != nil {
		return err
	}
	site, old, err := readSite(e)
	if err != nil {
		return err
	}
	if err := checkLinkToken(e, tok, args[0], time.Now()); err != nil {
		return err
	}
	if err := notOwn(tok, args[0], site.Name); err != nil {
		return err
	}
	if err := notLinked(e, site, tok.Site); err != nil {
		return err
	}
	copied, err := addLink(e, site, old, name, data, cost)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "Link %s to site %s added to %s (cost %d; token copied to %s).\n", name, tok.Site, e.opts.siteFile, cost, copied)
	l := &linuxSite{file: site, admin: e.opts.admin}
	fmt.Fprintf(e.out, "Its gateway reloads the site file by itself and dials site %s; %s.\n", tok.Site, l.waitLink(ctx, e, tok.Site, e.dur("timeout")))
	return nil
}

// notLinked refuses a second link to peer: the site file already has one
// whose token is peer's.
func notLinked(e *env, site *sitefile.Site, peer string) error {
	for i, ln := range site.Links {
		if p, err := peerOf(ln.Token); err == nil && p == peer {
			return fmt.Errorf("%s links to site %s already (links[%d], line %d: %s): `%s link delete %s --site-file %s` first to replace it",
				e.opts.siteFile, peer, i, ln.Line, ln.Token, e.name, peer, e.opts.siteFile)
		}
	}
	return nil
}

// peerOf returns the site that issued the token file at path.
func peerOf(path string) (string, error) {
	b, err := readLimited(path, maxTokenFile)
	if err != nil {
		return "", err
	}
	tok, err := token.Parse(b)
	if err != nil {
		return "", err
	}
	return tok.Site, nil
}

// addLink copies the token data into site's data dir under name and adds
// it, at cost, to the site file, which holds old; it returns the copy's
// path. On any error nothing is left changed.
func addLink(e *env, site *sitefile.Site, old []byte, name string, data []byte, cost int) (string, error) {
	dest, err := datadir.LinkTokenPath(site.DataDir, name)
	if err != nil {
		return "", fmt.Errorf("link name %q (--name): %w", name, err)
	}
	next, err := sitefile.AddLink(old, tokenRef(site.Path, dest), cost)
	if err != nil {
		return "", fmt.Errorf("%s: %w", e.opts.siteFile, err)
	}
	copied, undo, err := datadir.SaveLinkToken(site.DataDir, name, data, logr.Discard())
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("a link named %s has a token copy already (%s): choose another name with --name, or remove that file if no link of %s names it: %w", name, dest, e.opts.siteFile, err)
	}
	if err != nil {
		return "", err
	}
	if _, err := sitefile.Replace(e.opts.siteFile, old, next); err != nil {
		undo()
		return "", err
	}
	return copied, nil
}

// tokenRef is how the site file at sitePath names the token file at
// path: relative to the site file's directory when it lies below it, else
// absolute.
func tokenRef(sitePath, path string) string {
	if rel, err := filepath.Rel(filepath.Dir(sitePath), path); err == nil && filepath.IsLocal(rel) {
		return filepath.ToSlash(rel)
	}
	return path
}

// waitLink waits, up to timeout, until the gateway at --admin shows the
// site's link to peer up, and says what it saw. A gateway that cannot be
// asked is no error: it reloads the site file by itself when it runs.
func (l *linuxSite) waitLink(ctx context.Context, e *env, peer string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	later := fmt.Sprintf("`%s link list --site-file %s` shows its state", e.name, e.opts.siteFile)
	doc, err := l.view(ctx)
	if err != nil {
		return fmt.Sprintf("whether the link is up could not be read (%v); %s", err, later)
	}
	for !linkedTo(l.status(doc), l.file.Name, peer) {
		select {
		case <-ctx.Done():
			return "the link is not up yet; " + later
		case <-time.After(pollEvery):
		}
		if next, err := l.view(ctx); err == nil {
			doc = next
		}
	}
	return "the link is up"
}

// linuxLinkDelete removes the link NAME (its peer site, or its token
// file as link list shows it) from the site file of --site-file, and the
// token's copy in the site's data dir; the running gateway reloads the
// file and closes the link.
func linuxLinkDelete(_ context.Context, e *env, args []string) error {
	site, old, err := readSite(e)
	if err != nil {
		return err
	}
	ln, peer, err := findLink(e, site, args[0])
	if err != nil {
		return err
	}
	next, err := sitefile.RemoveLink(e.opts.siteFile, old, ln.Token)
	if err != nil {
		return err
	}
	if _, err := sitefile.Replace(e.opts.siteFile, old, next); err != nil {
		return err
	}
	link := "the link to site " + peer
	if peer == "" { // its token does not read
		link = "the link " + ln.Token
	}
	removed, err := datadir.RemoveLinkToken(site.DataDir, ln.Token)
	if err != nil {
		return fmt.Errorf("%s is deleted from %s, but %w: remove it by hand", link, e.opts.siteFile, err)
	}
	copied := ""
	if removed {
		copied = ", and its token copy " + ln.Token
	}
	fmt.Fprintf(e.out, "Deleted %s from %s%s.\nIts gateway reloads the site file by itself and closes the link.\n", link, e.opts.siteFile, copied)
	return nil
}

// findLink returns the link of site that name names, with its peer: a
// peer site (link list's PEER), or a token file (its NAME).
func findLink(e *env, site *sitefile.Site, name string) (sitefile.Link, string, error) {
	path, _ := filepath.Abs(name)
	var found []sitefile.Link
	var peers []string
	for _, ln := range site.Links {
		peer, _ := peerOf(ln.Token)
		if ln.Token == path {
			return ln, peer, nil
		}
		if peer == name {
			found, peers = append(found, ln), append(peers, peer)
		}
	}
	switch len(found) {
	case 0:
		return sitefile.Link{}, "", fmt.Errorf("%s has no link %s: `%s link list --site-file %s` lists them (NAME is a link's PEER, or its token file); nothing changed",
			e.opts.siteFile, name, e.name, e.opts.siteFile)
	case 1:
		return found[0], peers[0], nil
	}
	var lines []string
	for _, ln := range found {
		lines = append(lines, fmt.Sprintf("%s (line %d)", ln.Token, ln.Line))
	}
	return sitefile.Link{}, "", fmt.Errorf("%s has %d links to site %s: %s; name one by its token file; nothing changed", e.opts.siteFile, len(found), name, strings.Join(lines, ", "))
}
