package router

import (
	"crypto/x509"
	"encoding/pem"

	"time"
)

// Link certificates are renewed over the link they serve, with nothing
// dropped: the site that issued one sends the linked site a new one on
// the link's control stream once two thirds of the old one's life are
// over; the linked site checks it (linkClientCert) and keeps it for its
// next connections, saved where the old one was. A linked site that was
// down at the time gets one at its next connection, as long as its old
// certificate is still valid or expired less than pki.LinkGraceEnd ago
// (the hello reply carries the new one, identifyLinkCert); past that, it
// redeems its token again, or needs a new one.

// certLife is a certificate's validity.
type certLife struct{ notBefore, notAfter time.Time }

func (c certLife) zero() bool { return c.notAfter.IsZero() }

// renewAt is when two thirds of the life are over.
func (c certLife) renewAt() time.Time {
	return c.notBefore.Add(c.notAfter.Sub(c.notBefore) * 2 / 3)
}

// lifeOf returns the validity of a PEM certificate (zero if it does not
// parse: nothing is renewed).
func lifeOf(certPEM []byte) certLife {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return certLife{}
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return certLife{}
	}
	return certLife{cert.NotBefore, cert.NotAfter}
}

// scheduleRenewal arms the renewal of the peer's link certificate, on an
// accepted link of another site that rests on one; the timer goes with
// the link (close stops it), and a renewal it starts is one of the
// router's tasks, which a stopped router does not run.
func (l *link) scheduleRenewal(life certLife) {
	r := l.r
	if l.dialed || l.role != roleGateway || l.peer == r.self || l.tokenID == "" || life.zero() || r.cfg.Admission == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if l.renewTimer != nil {
		l.renewTimer.Stop()
	}
	// At least a second on: a certificate already due is renewed at
	// once, but never in a loop.
	l.renewTimer = time.AfterFunc(max(time.Until(life.renewAt()), time.Second), func() { r.tasks.run(l.renew) })
}

// renew issues the peer a new link certificate and sends it on the
// control stream; a refusal (the token revoked) leaves the link as it is,
// and the next connection with the old certificate is refused.
func (l *link) renew() {
	r := l.r
	l.mu.Lock()
	key := l.key
	l.mu.Unlock()
	certPEM, err := r.cfg.Admission.RenewLink(l.tokenID, l.peer, key)
	if err != nil {
		r.log.Info("link certificate not renewed", "peerSite", l.peer, "token", l.tokenID, "error", err.Error())
		return
	}
	// Counted before the peer can have it: whoever sees the peer holding
	// it sees the count too.
	r.m.LinkCertsRenewed.WithLabelValues(l.peer).Inc()
	l.queueCert(certPEM)
	life := lifeOf(certPEM)
	r.log.Info("link certificate renewed", "peerSite", l.peer, "token", l.tokenID, "expires", life.notAfter.UTC().Format(time.RFC3339))
	l.scheduleRenewal(life)
}

// queueCert queues a link certificate for the peer on the control
// stream.
func (l *link) queueCert(certPEM []byte) {
	l.pendMu.Lock()
	l.pendingCert = string(certPEM)
	l.pendMu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// takeCert handles a link certificate the peer sent on the control
// stream: only the site that dialled the link with the peer's token
// takes one.
func (l *link) takeCert(certPEM string) {
	r := l.r
	if !l.dialed || l.learn == nil {
		r.log.Info("link certificate from a peer that is not this site's issuer ignored", "peerSite", l.peer)
		return
	}
	if err := l.learn(certPEM); err != nil {
		r.log.Info("renewed link certificate refused; keeping the one before", "peerSite", l.peer, "error", err.Error())
		return
	}
	r.log.Info("link certificate renewed by the peer", "peerSite", l.peer, "expires", lifeOf([]byte(certPEM)).notAfter.UTC().Format(time.RFC3339))
}

// certExpiry records when a link certificate this site holds expires.
func (r *Router) certExpiry(peer string, certPEM []byte) {
	if life := lifeOf(certPEM); !life.zero() {
		r.m.CertExpiry.WithLabelValues("link", peer).Set(float64(life.notAfter.Unix()))
	}
}
