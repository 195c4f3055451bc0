package l7

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the header fields of one hop (RFC 9110, 7.6.1), which a
// proxy does not pass on, and Expect, which a copy made from a body read
// whole has no use for.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect",
}

// forwardedHeaders are a client's forwarding fields, which net/http's
// ReverseProxy (with Rewrite) removes and the fast path removes too:
// skiff does not vouch for them.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// skiffHeaders are skiff's own fields between sites: a client's or an
// endpoint's are never passed on.
var skiffHeaders = []string{multicastHeader, multicastDeadlineHeader, multicastResultHeader, UndeliveredHeader}

// dropSkiffHeaders removes skiff's own fields from h.
func dropSkiffHeaders(h http.Header) {
	for _, k := range skiffHeaders {
		h.Del(k)
	}
}

// outboundHeader returns a copy of a request's header for the next hop:
// without the hop's own fields (those listed in Connection too) and
// skiff's.
func outboundHeader(in http.Header) http.Header {
	h := in.Clone()
	if h == nil {
		h = http.Header{}
	}
	for _, v := range in.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				h.Del(t)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	dropSkiffHeaders(h)
	return h
}

// answerHeader returns an endpoint's answer header as a multicast answer
// lists it: without the hop's own fields and skiff's, at most
// maxAnswerHeaders fields.
func answerHeader(in http.Header) map[string][]string {
	h := outboundHeader(in)
	if len(h) == 0 {
		return nil
	}
	for k := range h {
		if len(h) <= maxAnswerHeaders {
			break
		}
		delete(h, k)
	}
	return h
}

func validHeaderName(k string) bool  { return httpguts.ValidHeaderFieldName(k) }
func validHeaderValue(v string) bool { return httpguts.ValidHeaderFieldValue(v) }

// printable reports text with no control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
