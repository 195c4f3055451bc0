package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// UndeliveredHeader is on an answer skiff wrote for a request that
// reached no endpoint: a far site's tells the origin to try another
// candidate. Its value says why (no_endpoint, dial, ...). It is removed
// from the answers of endpoints, which cannot make a request go twice.
const UndeliveredHeader = "Skiff-Undelivered"

// plan is what the transport of one request needs: where it may go.
type plan struct {
	address  string
	pattern  model.Pattern
	targets  []Target
	fromSite bool
	origin   string // the site that sent the request over a link; "" for this site's clients
	start    time.Time
	// site is the site that answered; set by RoundTrip.
	site string
	// undelivered is why the last attempt reached no endpoint.
	undelivered string
	// retries counts the targets tried after the first.
	retries int
}

type planKey struct{}

// originOf is the origin label of a connection's requests: the site that
// sent them over a link, "" for this site's clients. The traffic a site
// originated is then the series without one (package counters), whatever
// the site's name.
func originOf(ci connInfo) string {
	if ci.fromSite {
		return ci.origin
	}
	return ""
}

// serveHTTP is every request's handler: one from a client of this site
// is routed, one another site sent here is delivered.
func (e *Engine) serveHTTP(w http.ResponseWriter, req *http.Request) {
	ci, ok := infoOf(req.Context())
	if !ok {
		http.Error(w, "skiff: connection of unknown origin", http.StatusInternalServerError)
		return
	}
	// A proxy reads the body while the answer comes back (an endpoint
	// may answer before the upload ends); without this net/http's
	// HTTP/1 server would throw the rest of the body away once the
	// answer starts.
	_ = http.NewResponseController(w).EnableFullDuplex()
	p := &plan{address: ci.address, fromSite: ci.fromSite, origin: originOf(ci), start: time.Now()}
	var rec *record
	if ci.logged {
		rec, req = track(w, req)
		w = rec
		defer e.logRequest(p, rec, req) // a panic (ErrAbortHandler) too
	}
	if msg := ci.framing.refusal(); msg != "" {
		e.refuseAmbiguous(w, req, p, msg) // its framing is ambiguous (framing.go)
		return
	}
	var err error
	multicastHere := false
	if ci.fromSite {
		p.targets, err = e.up.LocalTargets(ci.address)
		p.pattern = model.Balanced
		if multicastHere = req.Header.Get(multicastHeader) != ""; multicastHere {
			p.pattern = model.Multicast
		}
	} else {
		// A client's request carries none of skiff's own fields: they
		// would make another site copy it to every endpoint.
		dropSkiffHeaders(req.Header)
		dropH2CUpgrade(req)
		p.targets, p.pattern, err = e.up.Targets(ci.address)
		if err == nil && p.pattern != model.Multicast && isUpgrade(req) {
			e.pin(w, req, p, rec)
			return
		}
	}
	if err != nil || len(p.targets) == 0 {
		if err == nil {
			err = errors.New("no endpoint")
		}
		e.refuse(w, req, p, "no_endpoint", noEndpointMessage(e.o.Self, ci.address, err))
		return
	}
	switch {
	case multicastHere:
		e.multicastHere(w, req, p)
		return
	case p.pattern == model.Multicast:
		e.multicast(w, req, p)
		return
	}
	e.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), planKey{}, p)))
}

// RoundTrip sends a request to its plan's targets in order until one
// takes it; a target that it did not reach (dial failed, or a far site
// answered UndeliveredHeader) passes it to the next, as long as its body
// can be sent again.
func (e *Engine) RoundTrip(out *http.Request) (*http.Response, error) {
	p, ok := out.Context().Value(planKey{}).(*plan)
	if !ok {
		return nil, errors.New("skiff: request without a plan")
	}
	// The client's body is not closed here: the attempt that got through
	// may still be sending it when RoundTrip returns (its answer can come
	// first), and the server closes it when the handler is done.
	var body *replayBody
	if out.Body != nil && out.Body != http.NoBody {
		body = newReplayBody(out.Body, e.o.MaxReplay)
	}
	var errs []error
	for i, t := range p.targets {
		if i == e.o.MaxAttempts {
			break
		}
		if i > 0 {
			if body != nil && !body.replayable() {
				break
			}
			e.m.Retries.WithLabelValues(p.address).Inc()
			p.retries++
		}
		resp, err := e.try(out, p, t, body)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
		if !isUndelivered(err) {
			return nil, errors.Join(errs...)
		}
	}
	return nil, &undeliveredError{reason: p.undelivered, err: errors.Join(errs...)}
}

// try sends the request to one target. An answer of the target comes
// back with its body counted outstanding until closed; one that did not
// reach an endpoint is an *undeliveredError.
func (e *Engine) try(out *http.Request, p *plan, t Target, body *replayBody) (*http.Response, error) {
	req := new(http.Request)
	*req = *out
	u := *out.URL
	req.URL = &u
	u.Scheme = "http"
	tr, host := e.roundTripper(p.address, t, body != nil)
	u.Host = host
	if body != nil {
		req.Body = body.attempt()
		req.GetBody = body.getBody
	}
	done := e.up.Track(t.Key)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		done()
		if u, ok := errors.AsType[*undeliveredError](err); ok {
			p.undelivered = u.reason
		}
		return nil, fmt.Errorf("%s: %w", describe(t), err)
	}
	if reason := resp.Header.Get(UndeliveredHeader); reason != "" && t.Site != "" {
		// The far site had no endpoint to give it.
		done()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		p.undelivered = reason
		return nil, &undeliveredError{reason: reason, err: fmt.Errorf("%s: %s", describe(t), resp.Status)}
	}
	p.site = t.Site
	if p.site == "" {
		p.site = e.o.Self
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
	return resp, nil
}

// roundTripper returns how a request of address goes to t, and the host
// its URL names: to a site over link streams, to a local endpoint
// directly; HTTP/2 for endpoints that speak it; a request without a body
// over HTTP/1.1 on the caller's goroutine (h1Pool), one with a body
// through net/http's Transport.
func (e *Engine) roundTripper(address string, t Target, hasBody bool) (http.RoundTripper, string) {
	h2 := t.Protocol == model.HTTP2 || t.Protocol == model.GRPC
	switch {
	case !h2 && !hasBody:
		return e.h1For(address, t)
	case t.Site != "":
		return e.siteTransport(address, t.Site, h2), t.Site
	case h2:
		return e.local2, t.Endpoint
	}
	return e.local1, t.Endpoint
}

// h1For returns the pool of kept-alive HTTP/1.1 connections to t, and
// the host its requests name: a site's link streams for address, or a
// local endpoint.
func (e *Engine) h1For(address string, t Target) (*h1Pool, string) {
	if t.Site != "" {
		return e.siteH1(address, t.Site), t.Site
	}
	return e.h1, t.Endpoint
}

func describe(t Target) string {
	if t.Site != "" {
		return "site " + t.Site
	}
	return "local endpoint " + t.Endpoint
}

// modifyResponse counts an answer; on a far site it removes an
// endpoint's UndeliveredHeader, which only skiff may write.
func (e *Engine) modifyResponse(resp *http.Response) error {
	p, _ := resp.Request.Context().Value(planKey{}).(*plan)
	if p == nil {
		return nil
	}
	if p.fromSite || p.site == e.o.Self {
		resp.Header.Del(UndeliveredHeader)
	}
	e.m.observe(p, resp.StatusCode)
	return nil
}

// proxyError answers a request that failed: 503 with UndeliveredHeader
// when it reached no endpoint (so another site's origin tries elsewhere),
// 502 when an endpoint failed it.
func (e *Engine) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	p, _ := req.Context().Value(planKey{}).(*plan)
	if p == nil {
		http.Error(w, "skiff: "+err.Error(), http.StatusBadGateway)
		return
	}
	if u, ok := errors.AsType[*undeliveredError](err); ok {
		reason := u.reason
		if reason == "" {
			reason = "dial"
		}
		e.refuse(w, req, p, reason, undeliveredMessage(p.address, err))
		return
	}
	if req.Context().Err() != nil {
		// The client went away: nobody reads the answer.
		e.m.observe(p, 499)
		return
	}
	e.log.Info("request failed", "address", p.address, "method", req.Method, "error", err.Error())
	e.m.observe(p, http.StatusBadGateway)
	http.Error(w, "skiff: "+err.Error(), http.StatusBadGateway)
}

// noEndpointMessage is the answer to a request for an address that has
// no endpoint.
func noEndpointMessage(self, address string, err error) string {
	return fmt.Sprintf("skiff: site %s has no endpoint for %q: %v", self, address, err)
}

// undeliveredMessage is the answer to a request that no endpoint took.
func undeliveredMessage(address string, err error) string {
	return fmt.Sprintf("skiff: no endpoint of %q took the request: %v", address, err)
}

// refuse answers a request that reached no endpoint.
func (e *Engine) refuse(w http.ResponseWriter, req *http.Request, p *plan, reason, msg string) {
	if !p.fromSite {
		e.log.Info("request not delivered", "address", p.address, "method", req.Method, "reason", reason, "error", msg)
	}
	p.site = ""
	e.m.observe(p, http.StatusServiceUnavailable)
	w.Header().Set(UndeliveredHeader, reason)
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// doneBody calls done once, when the body is closed.
type doneBody struct {
	io.ReadCloser
	done func()
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	if b.done != nil {
		b.done()
		b.done = nil
	}
	return err
}

// dropH2CUpgrade removes a request's offer to upgrade to cleartext
// HTTP/2 (RFC 7540's h2c upgrade, which RFC 9113 deprecated): it is
// answered in HTTP/1.1, as any server that does not take the offer does,
// rather than pinned to an endpoint like an upgrade it cannot refuse.
func dropH2CUpgrade(req *http.Request) {
	if !strings.EqualFold(strings.TrimSpace(req.Header.Get("Upgrade")), "h2c") {
		return
	}
	req.Header.Del("Upgrade")
	req.Header.Del("Http2-Settings")
	var keep []string
	for _, v := range req.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, "upgrade") && !strings.EqualFold(t, "http2-settings") {
				keep = append(keep, t)
			}
		}
	}
	req.Header.Del("Connection")
	if len(keep) > 0 {
		req.Header.Set("Connection", strings.Join(keep, ", "))
	}
}

// isUpgrade reports an HTTP/1.1 request that asks to switch protocols
// (WebSocket).
func isUpgrade(req *http.Request) bool {
	if req.ProtoMajor != 1 || req.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range req.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}
