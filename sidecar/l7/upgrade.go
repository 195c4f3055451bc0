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
// sides, until either closes.
func (e *Engine) pin(w http.ResponseWriter, req *http.Request, address string) {
	p := &plan{address: address}
	targets, _, err := e.up.Targets(address)
	if err != nil || len(targets) == 0 {
		e.refuse(w, req, p, "no_endpoint", fmt.Sprintf("skiff: site %s has no endpoint for %q", e.o.Self, address))
		return
	}
	var up net.Conn
	var errs []error
	for i, t := range targets {
		if i == e.o.MaxAttempts {
			break
		}
		c, err := e.up.DialPinned(req.Context(), address, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", describe(t), err))
			continue
		}
		up = c
		p.site = t.Site
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
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	splice(client, up)
}

// splice copies both ways until both directions ended, passing a
// half-close on where the connection can.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
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
	go cp(b, a)
	cp(a, b)
	wg.Wait()
}
