package sitefile

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// WatchOptions say how Watch notices a change.
type WatchOptions struct {
	// Every is how often the file's modification time is checked;
	// default a second.
	Every time.Duration
	// Since is the modification time of the file as the caller last
	// loaded it: a file still at that time is not a change. Zero: the
	// first check loads it.
	Since time.Time
	// SIGHUP also reloads the file when the process gets SIGHUP, changed
	// or not.
	SIGHUP bool
}

// Watch loads the site file at path again whenever it changes and calls
// apply with it and its modification time, until ctx ends. A file that
// does not load is reported (an Error log line) and apply is not called:
// the caller keeps what it runs. It is the one site-file watcher of the
// gateway, the sidecar and the controller of a Linux site.
func Watch(ctx context.Context, path string, o WatchOptions, log logr.Logger, apply func(site *Site, modified time.Time)) {
	var hup chan os.Signal
	if o.SIGHUP {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	every := o.Every
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := o.Since
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-t.C:
			if m := ModTime(path); m.IsZero() || m.Equal(last) {
				continue
			}
		}
		last = ModTime(path)
		site, err := Load(path)
		if err != nil {
			log.Error(err, "site file changed but does not load; keeping the running configuration", "siteFile", path)
			continue
		}
		apply(site, last)
	}
}

// ModTime returns the modification time of path, zero if it cannot be
// read.
func ModTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
