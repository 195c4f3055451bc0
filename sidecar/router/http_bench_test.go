package router

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// BenchmarkHTTPAcrossSites: keep-alive GETs through east's listener to an
// endpoint in west, HTTP/1.1 on both ends, in parallel; b.N requests.
// The endpoint answers with a length, as most do (and as skiff-echo does
// in make bench-http): a streamed answer is flushed at every write.
// Read with -cpuprofile to see where a request's time goes.
func BenchmarkHTTPAcrossSites(b *testing.B) { benchHTTPAcrossSites(b, false) }

// BenchmarkHTTP2AcrossSites is BenchmarkHTTPAcrossSites with an HTTP/2
// client (prior knowledge, one connection, many streams).
func BenchmarkHTTP2AcrossSites(b *testing.B) { benchHTTPAcrossSites(b, true) }

func benchHTTPAcrossSites(b *testing.B, h2 bool) {
	web := map[string]model.Protocol{"web": model.HTTP}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "west\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close() })
	conn := Connector{Address: "web", Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
	port := tu.FreePort(b, "127.0.0.1")
	east := startSite(b, "east", true, nil, Services{Listeners: []Listener{{Address: "web", Host: "127.0.0.1", Port: port}}, Protocols: web})
	startSite(b, "west", false, []LinkSpec{specFor(b, east.issue(b, 1))}, Services{Connectors: []Connector{conn}, Protocols: web})
	tu.Eventually(b, 10*time.Second, "east sees web in west", func() error {
		if remoteSites(east, "web") != 1 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	if h2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
