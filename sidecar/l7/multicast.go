package l7

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// Multicast: a request to a multicast address is copied to every ready
// endpoint of the address in every site. The origin (the client's
// sidecar or gateway) sends one copy to each of its own endpoints and one
// copy to each other site that serves the address; that site's gateway
// copies it to each of its endpoints and answers the origin with their
// answers in one document (siteResult). The origin then answers the
// client with a Result: every answer (aggregate), or 202 Accepted and
// counts (events).

// Headers of multicast answers and of the copies sent between sites.
const (
	// DeliveredHeader and FailedHeader are on a multicast answer: the
	// copies an endpoint answered with a 2xx status, and the rest.
	DeliveredHeader = "Skiff-Multicast-Delivered"
	FailedHeader    = "Skiff-Multicast-Failed"
	// multicastHeader is on a copy sent to another site: its mode. The
	// site copies it to its own endpoints and answers with a siteResult.
	multicastHeader = "Skiff-Multicast"
	// multicastDeadlineHeader is the milliseconds that site has.
	multicastDeadlineHeader = "Skiff-Multicast-Deadline"
	// multicastResultHeader marks a site's answer as a siteResult, of
	// the version it names.
	multicastResultHeader = "Skiff-Multicast-Result"
	multicastResultV1     = "1"
)

// multicastSite is the site label of a multicast request's metrics: many
// sites answered it; no site is named "*".
const multicastSite = "*"

// Limits of what a multicast request and its answers may hold.
const (
	// maxCopiesPerSite bounds the answers one site's document may list.
	maxCopiesPerSite = 1024
	// maxAnswerHeaders bounds the header fields one answer may list.
	maxAnswerHeaders = 64
	// maxAnswerError bounds an answer's error text.
	maxAnswerError = 512
	// maxParallelCopies bounds the copies of one request in flight.
	maxParallelCopies = 64
	// siteMargin is the part of the origin's remaining time a site gets,
	// so that its document arrives before the origin gives up.
	siteMargin = 0.9
)

// Answer is one endpoint's answer to a copy of a multicast request, or
// why there is none (Error; Status 0 when no endpoint answered).
type Answer struct {
	Site     string `json:"site,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Status   int    `json:"status,omitempty"`
	// Headers and a body are kept in aggregate mode only. The body is
	// Body when it is UTF-8, else BodyBase64; Truncated when it was
	// longer than the engine keeps (Options.MaxMulticastAnswer).
	Headers    map[string][]string `json:"headers,omitempty"`
	Body       string              `json:"body,omitempty"`
	BodyBase64 []byte              `json:"bodyBase64,omitempty"`
	Truncated  bool                `json:"truncated,omitempty"`
	Error      string              `json:"error,omitempty"`
}

// delivered reports a copy its endpoint took: it answered 2xx.
func (a Answer) delivered() bool { return a.Status >= 200 && a.Status < 300 }

// Result is skiff's answer to a multicast request: how many copies were
// delivered (answered 2xx) and failed, and each answer, sorted by site
// and endpoint.
type Result struct {
	Address   string              `json:"address"`
	Mode      model.MulticastMode `json:"mode"`
	Delivered int                 `json:"delivered"`
	Failed    int                 `json:"failed"`
	Answers   []Answer            `json:"answers"`
}

// siteResult is a site's answer to the copy the origin sent it.
type siteResult struct {
	Answers []Answer `json:"answers"`
}

// copyJob is one copy of a multicast request.
type copyJob struct {
	address string
	mode    model.MulticastMode
	in      *http.Request
	body    []byte
}

// multicast answers a client's request to a multicast address: a copy to
// every target (this site's endpoints, one per other site), then the
// Result.
func (e *Engine) multicast(w http.ResponseWriter, req *http.Request, p *plan) {
	spec := e.up.Multicast(p.address)
	mode := spec.ModeOrDefault()
	p.site = multicastSite
	switch {
	case isUpgrade(req):
		e.answerPlain(w, p, http.StatusBadRequest, fmt.Sprintf("skiff: %q is a multicast address: its requests are copied, and a connection cannot be upgraded", p.address))
		return
	case mode == model.Events && req.Method != http.MethodPost && req.Method != http.MethodPut:
		w.Header().Set("Allow", "POST, PUT")
		e.answerPlain(w, p, http.StatusMethodNotAllowed, fmt.Sprintf("skiff: %q is a multicast address of events: send POST or PUT, not %s", p.address, req.Method))
		return
	}
	body, status, err := e.readMulticastBody(req)
	if err != nil {
		e.answerPlain(w, p, status, "skiff: "+err.Error())
		return
	}
	// The copies are not called back when the client goes away: some
	// may have been delivered already, and an event reaches every
	// endpoint or says which it did not.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), spec.Deadline())
	defer cancel()
	answers := e.fanOut(ctx, copyJob{address: p.address, mode: mode, in: req, body: body}, p.targets)
	res := Result{Address: p.address, Mode: mode, Answers: answers}
	for _, a := range answers {
		if a.delivered() {
			res.Delivered++
		} else {
			res.Failed++
		}
		e.m.Copies.WithLabelValues(p.address, siteLabel(a.Site), result(a)).Inc()
	}
	if req.Context().Err() != nil {
		e.m.observe(p, 499) // the client went away: nobody reads the answer
		return
	}
	code := http.StatusOK
	switch {
	case res.Delivered == 0:
		code = http.StatusBadGateway
	case mode == model.Events:
		code = http.StatusAccepted
	}
	if res.Failed > 0 {
		e.log.Info("multicast copies failed", "address", p.address, "delivered", res.Delivered, "failed", res.Failed)
	}
	w.Header().Set(DeliveredHeader, strconv.Itoa(res.Delivered))
	w.Header().Set(FailedHeader, strconv.Itoa(res.Failed))
	e.writeJSON(w, p, code, res)
}

func result(a Answer) string {
	if a.delivered() {
		return "delivered"
	}
	return "failed"
}

// multicastHere serves a copy another site sent: a copy to each of this
// site's endpoints (p.targets), answered with a siteResult.
func (e *Engine) multicastHere(w http.ResponseWriter, req *http.Request, p *plan) {
	p.site = e.o.Self
	mode := model.MulticastMode(req.Header.Get(multicastHeader))
	if mode != model.Aggregate && mode != model.Events {
		e.answerPlain(w, p, http.StatusBadRequest, fmt.Sprintf("skiff: unknown multicast mode %q", clip(string(mode), 32)))
		return
	}
	select {
	case e.siteFanOuts <- struct{}{}:
		defer func() { <-e.siteFanOuts }()
	default:
		w.Header().Set(UndeliveredHeader, "multicast_busy")
		e.answerPlain(w, p, http.StatusServiceUnavailable, fmt.Sprintf("skiff: site %s is copying %d multicast requests of other sites already", e.o.Self, cap(e.siteFanOuts)))
		return
	}
	deadline := model.DefaultMulticastTimeout
	if ms, err := strconv.ParseInt(req.Header.Get(multicastDeadlineHeader), 10, 64); err == nil && ms > 0 {
		deadline = min(time.Duration(ms)*time.Millisecond, model.MaxMulticastTimeout)
	}
	body, status, err := e.readMulticastBody(req)
	if err != nil {
		e.answerPlain(w, p, status, "skiff: "+err.Error())
		return
	}
	e.m.SiteCopies.WithLabelValues(p.address).Inc()
	// As at the origin, the copies run to their end or the deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), deadline)
	defer cancel()
	answers := e.fanOut(ctx, copyJob{address: p.address, mode: mode, in: req, body: body}, p.targets)
	for i := range answers {
		answers[i].Site = "" // the origin knows which site it asked
	}
	w.Header().Set(multicastResultHeader, multicastResultV1)
	e.writeJSON(w, p, http.StatusOK, siteResult{Answers: answers})
}

// readMulticastBody reads a request's body whole, to copy it; more than
// Options.MaxMulticastBody is refused (413).
func (e *Engine) readMulticastBody(req *http.Request) ([]byte, int, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, 0, nil
	}
	max := int64(e.o.MaxMulticastBody)
	if req.ContentLength > max {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("a multicast request's body is copied whole: at most %d bytes, not %d", max, req.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, max+1))
	switch {
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err)
	case int64(len(body)) > max:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("a multicast request's body is copied whole: at most %d bytes", max)
	}
	return body, 0, nil
}

// fanOut sends a copy of job to every target at once (at most
// maxParallelCopies in flight) and returns the answers, sorted by site
// and endpoint, once all came back or ctx ended.
func (e *Engine) fanOut(ctx context.Context, job copyJob, targets []Target) []Answer {
	per := make([][]Answer, len(targets))
	sem := make(chan struct{}, maxParallelCopies)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if t.Site != "" {
				per[i] = e.copyToSite(ctx, job, t)
			} else {
				per[i] = []Answer{e.copyToEndpoint(ctx, job, t)}
			}
		})
	}
	wg.Wait()
	out := slices.Concat(per...)
	slices.SortFunc(out, func(a, b Answer) int {
		return strings.Compare(a.Site+"\x00"+a.Endpoint, b.Site+"\x00"+b.Endpoint)
	})
	return out
}

// newCopy returns a copy of job's request for host, with what the client
// sent but the headers of its own hop and skiff's.
func newCopy(ctx context.Context, job copyJob, host string) *http.Request {
	u := *job.in.URL
	u.Scheme, u.Host = "http", host
	out := (&http.Request{Method: job.in.Method, URL: &u, Host: job.in.Host, Header: outboundHeader(job.in.Header)}).WithContext(ctx)
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	if len(job.body) > 0 {
		out.ContentLength = int64(len(job.body))
		out.Body = io.NopCloser(bytes.NewReader(job.body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(job.body)), nil }
	}
	return out
}

// copyToEndpoint sends a copy to a local endpoint.
func (e *Engine) copyToEndpoint(ctx context.Context, job copyJob, t Target) Answer {
	a := Answer{Site: e.o.Self, Endpoint: t.Endpoint}
	tr, host := e.roundTripper(job.address, t, len(job.body) > 0)
	done := e.up.Track(t.Key)
	defer done()
	resp, err := tr.RoundTrip(newCopy(ctx, job, host))
	if err != nil {
		a.Error = copyError(ctx, err)
		return a
	}
	defer resp.Body.Close()
	a.Status = resp.StatusCode
	if job.mode == model.Aggregate {
		a.Headers = answerHeader(resp.Header)
		err = e.keepBody(&a, resp.Body)
	} else {
		// An event's answer is its status; its body is read (a little)
		// so that the connection can serve the next copy.
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	}
	if err != nil {
		a.Error = "reading the answer: " + copyError(ctx, err)
	}
	return a
}

// keepBody puts an answer's body into a, up to Options.MaxMulticastAnswer
// bytes.
func (e *Engine) keepBody(a *Answer, body io.Reader) error {
	max := e.o.MaxMulticastAnswer
	b, err := io.ReadAll(io.LimitReader(body, int64(max)+1))
	if len(b) > max {
		b, a.Truncated = b[:max], true
	}
	if utf8.Valid(b) {
		a.Body = string(b)
	} else {
		a.BodyBase64 = b
	}
	return err
}

// copyToSite sends one copy to a site, which copies it to its endpoints,
// and returns their answers; one failed answer for the site when it
// gave none.
func (e *Engine) copyToSite(ctx context.Context, job copyJob, t Target) []Answer {
	fail := func(format string, args ...any) []Answer {
		return []Answer{{Site: t.Site, Error: fmt.Sprintf(format, args...)}}
	}
	tr, host := e.roundTripper(job.address, t, len(job.body) > 0)
	out := newCopy(ctx, job, host)
	out.Header.Set(multicastHeader, string(job.mode))
	if dl, ok := ctx.Deadline(); ok {
		ms := max(int64(float64(time.Until(dl))*siteMargin/float64(time.Millisecond)), 1)
		out.Header.Set(multicastDeadlineHeader, strconv.FormatInt(ms, 10))
	}
	done := e.up.Track(t.Key)
	defer done()
	resp, err := tr.RoundTrip(out)
	if err != nil {
		return fail("site %s: %s", t.Site, copyError(ctx, err))
	}
	defer resp.Body.Close()
	if reason := resp.Header.Get(UndeliveredHeader); reason != "" {
		return fail("site %s has no endpoint that took it (%s)", t.Site, clip(reason, 32))
	}
	if v := resp.Header.Get(multicastResultHeader); v != multicastResultV1 {
		return fail("site %s answered %d without a multicast result", t.Site, resp.StatusCode)
	}
	answers, err := e.readSiteResult(resp.Body)
	if err != nil {
		return fail("site %s: %s", t.Site, copyError(ctx, err))
	}
	if len(answers) == 0 {
		return fail("site %s has no endpoint", t.Site)
	}
	for i := range answers {
		answers[i].Site = t.Site
	}
	return answers
}

// readSiteResult reads and checks a site's answers, which came from the
// network: sizes are bounded before they are read, and every field
// checked.
func (e *Engine) readSiteResult(body io.Reader) ([]Answer, error) {
	limit := e.maxSiteResult()
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("multicast result over %d bytes", limit)
	}
	return parseSiteResult(b, e.o.MaxMulticastAnswer)
}

// maxSiteResult bounds the document a site may answer: every copy's
// answer at its largest, base64 and headers included.
func (e *Engine) maxSiteResult() int64 {
	return int64(maxCopiesPerSite) * (int64(e.o.MaxMulticastAnswer)*4/3 + 16<<10)
}

// parseSiteResult decodes a site's document and checks it: at most
// maxCopiesPerSite answers, each with a printable endpoint, a status of
// 0 or 100-599, valid header fields, a body of at most maxBody bytes.
func parseSiteResult(b []byte, maxBody int) ([]Answer, error) {
	var r siteResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bad multicast result: %w", err)
	}
	if len(r.Answers) > maxCopiesPerSite {
		return nil, fmt.Errorf("bad multicast result: %d answers, at most %d", len(r.Answers), maxCopiesPerSite)
	}
	for i, a := range r.Answers {
		if err := checkAnswer(a, maxBody); err != nil {
			return nil, fmt.Errorf("bad multicast result: answer %d: %w", i, err)
		}
	}
	return r.Answers, nil
}

func checkAnswer(a Answer, maxBody int) error {
	switch {
	case a.Site != "":
		return errors.New("names a site")
	case len(a.Endpoint) > 260 || !printable(a.Endpoint):
		return fmt.Errorf("bad endpoint %q", clip(a.Endpoint, 64))
	case a.Status != 0 && (a.Status < 100 || a.Status > 599):
		return fmt.Errorf("bad status %d", a.Status)
	case a.Status == 0 && a.Error == "":
		return errors.New("neither a status nor an error")
	case len(a.Error) > maxAnswerError || !printable(a.Error):
		return errors.New("bad error text")
	case len(a.Body) > maxBody || len(a.BodyBase64) > maxBody:
		return fmt.Errorf("body over %d bytes", maxBody)
	case len(a.Headers) > maxAnswerHeaders:
		return fmt.Errorf("%d header fields, at most %d", len(a.Headers), maxAnswerHeaders)
	}
	for k, vs := range a.Headers {
		if !validHeaderName(k) || len(vs) > maxAnswerHeaders {
			return fmt.Errorf("bad header field %q", clip(k, 64))
		}
		for _, v := range vs {
			if len(v) > 8<<10 || !validHeaderValue(v) {
				return fmt.Errorf("bad value of header field %q", clip(k, 64))
			}
		}
	}
	return nil
}

// copyError says why a copy got no answer.
func copyError(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "no answer before the multicast deadline"
	}
	return clip(err.Error(), maxAnswerError)
}

// answerPlain answers a multicast request skiff refused itself.
func (e *Engine) answerPlain(w http.ResponseWriter, p *plan, code int, msg string) {
	e.m.observe(p, code)
	http.Error(w, msg, code)
}

// writeJSON writes v as the answer.
func (e *Engine) writeJSON(w http.ResponseWriter, p *plan, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		e.answerPlain(w, p, http.StatusInternalServerError, "skiff: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	e.m.observe(p, code)
}
