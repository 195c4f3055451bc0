package l7

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
)

// pin carries a request that upgrades its connection (WebSocket) as a
// connection to one endpoint: the first target that connects gets the
// request as the client sent it, and from then on the bytes of both
// sides, until either closes. rec, if not nil, is the request's access
// log record: it gets the bytes carried each way.
func (e *Engine) pin(w http.ResponseWriter, req *http.Request, p *plan, rec *record) {
	address, targets := p.address, p.targets
	var up net.Conn
	var errs []error
	for i, t := range targets {
		if i == e.o.MaxAttempts {
			break
		}
		if i > 0 {
			p.retries++
		}
		c, err := e.up.DialPinned(req.Context(), address, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", describe(t), err))
			continue
		}
		up = c
		p.site = t.Site
		if p.site == "" {
			p.site = e.o.Self
		}
		break
	}
	if up == nil {
		e.refuse(w, req, p, "dial", fmt.Sprintf("skiff: no endpoint of %q took the request: %v", address, errors.Join(errs...)))
		return
	}
	defer up.Close()
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // no Go default
	}
	if err := req.Write(up); err != nil {
		http.Error(w, "skiff: "+err.Error(), http.StatusBadGateway)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "skiff: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer client.Close()
	e.m.Pinned.WithLabelValues(address).Inc()
	if rec != nil {
		rec.pinned = true // whatever the endpoint answers, passes as bytes
	}
	var early int64
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
		early = int64(n)
	}
	in, out := splice(client, up)
	if rec != nil {
		rec.bytesIn.Add(early + in)
		rec.out += out
	}
}

// splice copies both ways until both directions ended, passing a
// half-close on where the connection can, and returns the bytes it
// copied from a to b and from b to a.
func splice(a, b net.Conn) (aToB, bToA int64) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn, n *int64) {
		defer wg.Done()
		var err error
		if *n, err = io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
		a.Close()
		b.Close()
	}
	wg.Add(2)
	go cp(b, a, &aToB)
	cp(a, b, &bToA)
	wg.Wait()
	return aToB, bToA
}
