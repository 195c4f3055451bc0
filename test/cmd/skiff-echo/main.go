// Command skiff-echo is the small HTTP server and client that skiff's demo,
// tests and end-to-end images use: the server answers GET / with its name
// (a site, say) and echoes POST bodies; the client sends N requests and
// prints how many answers came from each name.
//
//	skiff-echo serve --listen 127.0.0.1:9090 --name east
//	skiff-echo get --url http://127.0.0.1:18080/ --count 30 [--new-conn]
//	skiff-echo port --host 127.0.0.2   # print a TCP port free on host
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-echo:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: skiff-echo serve|get [flags]")
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		listen := fs.String("listen", ":8080", "address to listen on")
		name := fs.String("name", envOr("SKIFF_ECHO_NAME", "echo"), "name to answer with")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return serve(*listen, *name)
	case "get":
		fs := flag.NewFlagSet("get", flag.ContinueOnError)
		url := fs.String("url", "", "URL to GET")
		count := fs.Int("count", 1, "requests to send")
		newConn := fs.Bool("new-conn", true, "a new connection per request (how TCP routing spreads load)")
		timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
		interval := fs.Duration("interval", 0, "start a request this often (a steady rate: 6ms is about 150/s) instead of one after another")
		untilEOF := fs.Bool("until-stdin-eof", false, "with --interval: stop starting requests once stdin ends (still at most --count), so that the caller decides how long the load runs")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		var stop <-chan struct{}
		if *untilEOF {
			if *interval <= 0 {
				return errors.New("--until-stdin-eof needs --interval")
			}
			ch := make(chan struct{})
			go func() { // ends with the process
				_, _ = io.Copy(io.Discard, os.Stdin)
				close(ch)
			}()
			stop = ch
		}
		return get(*url, *count, *newConn, *timeout, *interval, stop)
	case "port":
		fs := flag.NewFlagSet("port", flag.ContinueOnError)
		host := fs.String("host", "127.0.0.1", "host to find a free TCP port on")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(*host, "0"))
		if err != nil {
			return err
		}
		defer ln.Close()
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func serve(listen, name string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			io.Copy(w, r.Body)
			return
		}
		fmt.Fprintln(w, name)
	})
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "skiff-echo %s listening on %s\n", name, listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// get sends count GETs to url and prints how many each name answered
// (name=N), and error=N. With an interval the requests start at that pace,
// each in its own goroutine (at most count of them, each bounded by
// timeout), and the first and last failed request's start, in seconds
// since the first request, are printed too (firstError=S lastError=S).
// With stop, no request starts once it is closed, and how many were sent
// is printed (sent=N).
func get(url string, count int, newConn bool, timeout, interval time.Duration, stop <-chan struct{}) error {
	tr := &http.Transport{DisableKeepAlives: newConn}
	c := &http.Client{Transport: tr, Timeout: timeout}
	counts := map[string]int{}
	var mu sync.Mutex
	start := time.Now()
	first, last := -1.0, -1.0
	one := func(at time.Duration) {
		resp, err := c.Get(url)
		var name string
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			name = strings.TrimSpace(string(b))
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			counts["error"]++
			s := at.Seconds()
			if first < 0 || s < first {
				first = s
			}
			last = max(last, s)
			return
		}
		counts[name]++
	}
	sent := 0 // with stop only (which needs an interval)
	if interval <= 0 {
		for range count {
			one(time.Since(start))
		}
	} else {
		var wg sync.WaitGroup
		tick := time.NewTicker(interval)
	send:
		for i := range count {
			if i > 0 {
				select {
				case <-tick.C:
				case <-stop:
					break send
				}
			}
			at := time.Since(start)
			sent++
			wg.Go(func() { one(at) })
		}
		tick.Stop()
		wg.Wait()
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%s=%d ", n, counts[n])
	}
	if first >= 0 {
		fmt.Printf("firstError=%.3f lastError=%.3f ", first, last)
	}
	if stop != nil {
		fmt.Printf("sent=%d ", sent)
	}
	fmt.Println()
	return nil
}
