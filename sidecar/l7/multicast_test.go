package l7

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// TestParseSiteResult: a site's multicast document came from the
// network; every field is checked before the origin passes it on.
func TestParseSiteResult(t *testing.T) {
	const maxBody = 16
	good := `{"answers":[{"endpoint":"10.0.0.1:80","status":200,"headers":{"Served-By":["a"]},"body":"ok"},{"endpoint":"10.0.0.2:80","error":"connection refused"}]}`
	answers, err := parseSiteResult([]byte(good), maxBody)
	if err != nil || len(answers) != 2 || answers[0].Body != "ok" || answers[1].Error != "connection refused" {
		t.Fatalf("good document: %+v, %v", answers, err)
	}
	for name, doc := range map[string]string{
		"not json":          `{"answers":[`,
		"names a site":      `{"answers":[{"site":"east","endpoint":"e:1","status":200}]}`,
		"status 600":        `{"answers":[{"endpoint":"e:1","status":600}]}`,
		"status 42":         `{"answers":[{"endpoint":"e:1","status":42}]}`,
		"nothing":           `{"answers":[{"endpoint":"e:1"}]}`,
		"control in error":  `{"answers":[{"endpoint":"e:1","error":"a\u0000b"}]}`,
		"control endpoint":  `{"answers":[{"endpoint":"e\n1","status":200}]}`,
		"long endpoint":     `{"answers":[{"endpoint":"` + strings.Repeat("e", 300) + `","status":200}]}`,
		"body over limit":   `{"answers":[{"endpoint":"e:1","status":200,"body":"` + strings.Repeat("x", maxBody+1) + `"}]}`,
		"bad header name":   `{"answers":[{"endpoint":"e:1","status":200,"headers":{"Bad Name":["x"]}}]}`,
		"bad header value":  `{"answers":[{"endpoint":"e:1","status":200,"headers":{"X":["a\r\nb"]}}]}`,
		"long error":        `{"answers":[{"endpoint":"e:1","error":"` + strings.Repeat("x", maxAnswerError+1) + `"}]}`,
		"too many headers":  `{"answers":[{"endpoint":"e:1","status":200,"headers":{` + manyHeaders(maxAnswerHeaders+1) + `}}]}`,
		"too many answers":  `{"answers":[` + strings.TrimSuffix(strings.Repeat(`{"endpoint":"e:1","status":200},`, maxCopiesPerSite+1), ",") + `]}`,
		"status not number": `{"answers":[{"endpoint":"e:1","status":"200"}]}`,
	} {
		if a, err := parseSiteResult([]byte(doc), maxBody); err == nil {
			t.Errorf("%s: accepted %+v", name, a)
		} else if !strings.HasPrefix(err.Error(), "bad multicast result") {
			t.Errorf("%s: error %q", name, err)
		}
	}
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"H` + strings.Repeat("a", i+1) + `":["v"]`)
	}
	return b.String()
}

// FuzzParseSiteResult: whatever a site sends, the parser returns checked
// answers or an error, and what it accepts encodes and parses again.
func FuzzParseSiteResult(f *testing.F) {
	f.Add([]byte(`{"answers":[{"endpoint":"10.0.0.1:80","status":200,"headers":{"A":["b"]},"body":"ok","bodyBase64":"AAE="}]}`))
	f.Add([]byte(`{"answers":[{"endpoint":"e:1","error":"refused"}]}`))
	f.Add([]byte(`{"answers":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		answers, err := parseSiteResult(b, 64)
		if err != nil {
			return
		}
		if len(answers) > maxCopiesPerSite {
			t.Fatalf("%d answers accepted", len(answers))
		}
		for _, a := range answers {
			if a.Site != "" || (a.Status == 0 && a.Error == "") || len(a.Body) > 64 || len(a.BodyBase64) > 64 {
				t.Fatalf("accepted %+v", a)
			}
		}
		again, err := json.Marshal(siteResult{Answers: answers})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseSiteResult(again, 64); err != nil {
			t.Fatalf("re-encoded %s: %v", again, err)
		}
	})
}

// A site copies at most MaxSiteMulticast multicast requests of other
// sites at once: one more, while the first waits at its endpoint, is
// answered 503 with Skiff-Undelivered multicast_busy, and once the first
// is answered the next is copied again.
func TestSiteMulticastBound(t *testing.T) {
	got, release := make(chan struct{}, 4), make(chan struct{})
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		if strings.Contains(r.head, "/held") {
			got <- struct{}{}
			<-release
		}
		_, err := c.Write([]byte(okAnswer("copied")))
		return err == nil
	})
	a, _ := startFastEngine(t, Options{MaxSiteMulticast: 1, Upstreams: fakeUpstreams{map[string][]Target{"mc": httpTargets(ep.addr)}}})
	url := a.listen(t, "mc", false, true)
	post := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader("x"))
		req.Header.Set(multicastHeader, string(model.Events))
		req.Header.Set(multicastDeadlineHeader, "5000")
		resp, err := client(false).Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	first := make(chan *http.Response, 1)
	go func() { first <- post("/held") }()
	waitFor(t, got, "the first copy at the endpoint")
	busy := post("/busy")
	if busy.StatusCode != http.StatusServiceUnavailable || busy.Header.Get(UndeliveredHeader) != "multicast_busy" {
		t.Errorf("a second site multicast while one is copied: %s, %s %q; want 503, multicast_busy",
			busy.Status, UndeliveredHeader, busy.Header.Get(UndeliveredHeader))
	}
	close(release)
	if r := <-first; r.StatusCode != http.StatusOK || r.Header.Get(multicastResultHeader) != multicastResultV1 {
		t.Errorf("the first: %s, result %q; want 200 with a site result", r.Status, r.Header.Get(multicastResultHeader))
	}
	if r := post("/after"); r.StatusCode != http.StatusOK {
		t.Errorf("after the first was answered: %s, want 200", r.Status)
	}
}
