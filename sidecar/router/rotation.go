package router

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
)

// A site rotates its CA, and with it its site key, without dropping a
// link (docs/design.md, Certificate lifecycle):
//
//   - SetCA gives a running gateway the rotated CA (with the previous one
//     beside it). Its records are signed with the new key and carry the
//     previous key's endorsement of it (netview.Rollover), so peers that
//     hold the site's name for the previous key move it to the new one.
//     What the new CA issues carries the cross certificate, so peers that
//     trust only the previous CA still verify it; the previous CA stays
//     trusted for what it issued.
//   - On every link a peer dialled with this site's token, the gateway
//     sends its trust bundle (both CAs during the rotation, the new one
//     after it) and a new link certificate from the new CA. The peer keeps
//     the bundle as the roots it verifies this site with from then on.
//   - When a linked site's records show that it rotated its key, this
//     gateway moves the site's redemptions in its ledger to the new key
//     and sends it a link certificate for the new key over the link.
//   - A gateway that dials with a link certificate for its previous key
//     (not yet renewed) proves that key in its hello.
//
// Finishing the rotation (SetCA with no previous CA) drops the previous
// key from the records and the previous CA from what is trusted.

// maxBundle bounds the CA certificates of a trust bundle from a peer.
const maxBundle = 4

// siteKeys returns the site's current key and, during a CA rotation,
// its previous one.
func siteKeys(cfg Config) (cur, prev *ecdsa.PrivateKey) {
	if cfg.Authority == nil {
		return cfg.SiteKey, nil
	}
	ca := cfg.Authority.CA()
	if ca == nil {
		return nil, nil
	}
	if ca.Prev != nil {
		prev = ca.Prev.Key
	}
	return ca.Key, prev
}

// SetCA makes ca (a rotated site CA, or one whose rotation finished) the
// gateway's CA while it runs: the site record is signed with its key and
// flooded, the trust bundle and a link certificate from it are sent on
// every link dialled with this site's tokens. It needs Config.Authority.
func (r *Router) SetCA(ca *pki.CA) error {
	if r.cfg.Authority == nil || ca == nil {
		return errors.New("set CA: the router was not configured with an authority")
	}
	var prev *ecdsa.PrivateKey
	if ca.Prev != nil {
		prev = ca.Prev.Key
	}
	if err := r.db.SetKey(ca.Key, prev); err != nil {
		return fmt.Errorf("set CA: %w", err)
	}
	r.cfg.Authority.Set(ca)
	r.m.CertExpiry.WithLabelValues("ca", r.self).Set(float64(ca.Cert.NotAfter.Unix()))
	r.log.Info("site CA changed", "rotating", ca.Prev != nil, "key", netview.Fingerprint(r.db.HolderOf(r.self)), "expires", ca.Cert.NotAfter.UTC())
	r.floodLocal()
	r.viewChanged()
	for _, l := range r.tokenLinks("") {
		l.sendCA(ca)
		l.renewNow()
	}
	return nil
}

// tokenLinks returns the up links other sites dialled with this site's
// tokens (of site only, unless site is "").
func (r *Router) tokenLinks(site string) []*link {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*link
	for _, l := range r.links {
		if !l.dialed && l.role == roleGateway && l.peer != r.self && l.tokenID != "" && (site == "" || l.peer == site) && l.isUp() {
			out = append(out, l)
		}
	}
	return out
}

// sendCA queues the site's trust bundle for the peer of an accepted link.
func (l *link) sendCA(ca *pki.CA) {
	if ca == nil {
		return
	}
	l.pendMu.Lock()
	l.pendingCA = string(ca.BundlePEM())
	l.pendMu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// renewNow renews the peer's link certificate at once (a CA rotation, or
// the peer's key rollover).
func (l *link) renewNow() {
	l.mu.Lock()
	if l.renewTimer != nil {
		l.renewTimer.Stop()
	}
	closed := l.closed
	l.mu.Unlock()
	if !closed {
		l.r.tasks.tryGo(l.renew)
	}
}

// rolledOver reacts to records of site: a link it dialled with this
// site's token whose key the site replaced by an endorsed one gets a
// link certificate for the new key (the ledger moves to it first).
func (r *Router) rolledOver(site string) {
	if r.cfg.Admission == nil || site == r.self {
		return
	}
	for _, l := range r.tokenLinks(site) {
		l.mu.Lock()
		old := l.key
		l.mu.Unlock()
		cur, ok := r.db.Superseded(site, old)
		if !ok {
			continue
		}
		certPEM, err := r.cfg.Admission.RekeyLink(l.tokenID, site, old, cur)
		if err != nil {
			r.log.Info("link certificate for a rotated site key not issued", "peerSite", site, "token", l.tokenID, "error", err.Error())
			continue
		}
		l.mu.Lock()
		l.key = cur
		l.mu.Unlock()
		r.log.Info("linked site rotated its key: link certificate issued for the new key", "peerSite", site, "from", netview.Fingerprint(old), "to", netview.Fingerprint(cur))
		l.queueCert(certPEM)
		l.scheduleRenewal(lifeOf(certPEM))
	}
}

// takeCA handles a trust bundle the peer sent on the control stream:
// only the site that dialled the link with the peer's token takes it.
func (l *link) takeCA(bundle string) {
	r := l.r
	if !l.dialed || l.learnCA == nil {
		r.log.Info("CA bundle from a peer that is not this site's issuer ignored", "peerSite", l.peer)
		return
	}
	if err := l.learnCA([]byte(bundle)); err != nil {
		r.log.Info("CA bundle from the peer refused; keeping the roots before", "peerSite", l.peer, "error", err.Error())
	}
}

// parseBundle checks a trust bundle from site: 1 to maxBundle CA
// certificates, each of site ("skiff site <site> CA").
func parseBundle(site string, bundle []byte) (*x509.CertPool, error) {
	certs, err := pki.ParseCertificates(bundle, maxBundle)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA || c.Subject.CommonName != fmt.Sprintf("skiff site %s CA", site) {
			return nil, fmt.Errorf("certificate %q is not site %s's CA", clipName(c.Subject.CommonName), site)
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// samePeer reports whether a pool connection's peer p is the peer of
// link l: the same identity, or, during a key rotation of the peer site,
// the same site and router with either of the site's keys.
func (r *Router) samePeer(l *link, p peer) bool {
	if l.identity == p.identity() {
		return true
	}
	if l.role != roleGateway || p.role != roleGateway || l.peer != p.site || l.router != p.router {
		return false
	}
	l.mu.Lock()
	lk := l.key
	l.mu.Unlock()
	keys := r.db.KeysOf(p.site)
	return slices.Contains(keys, lk) && slices.Contains(keys, p.key)
}
