package l7

import (
	"errors"
	"io"
	"sync"
)

var (
	// errSuperseded is what an attempt's body returns once a later
	// attempt took over the request's body.
	errSuperseded = errors.New("request body taken by a later attempt")
	// errBodyGone is a later attempt that needs bytes no longer kept.
	errBodyGone = errors.New("request body was sent too far to be sent again")
)

// replayBody is a request body read by one attempt after another. It
// keeps the first max bytes read from the client, so that a request that
// reached no endpoint can be sent again from the start; once more than
// that was read, it cannot.
//
// An attempt that failed may still be blocked reading the client (its
// transport's writer) when the next starts: reads of the client are
// serialised by readMu, never under mu, and what the old attempt reads
// is kept for the new one.
type replayBody struct {
	src    io.ReadCloser
	max    int
	readMu sync.Mutex // held while reading src

	mu     sync.Mutex
	kept   []byte // the bytes read from src so far, while not over
	read   int    // bytes read from src
	over   bool   // more than max bytes were read: no replay
	srcErr error  // src's final error (io.EOF at the end)
	gen    int    // the current attempt
}

func newReplayBody(src io.ReadCloser, max int) *replayBody {
	return &replayBody{src: src, max: max}
}

// replayable reports whether a new attempt can start from the first byte.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.over
}

// attempt returns the body of a new attempt, which reads the kept bytes
// and then the rest of the client's; the earlier attempts' bodies fail
// from now on.
func (b *replayBody) attempt() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	return &attemptBody{b: b, gen: b.gen}
}

// getBody is the request's GetBody: a transport's own retry (a
// connection that closed before the request went out) starts a new
// attempt too.
func (b *replayBody) getBody() (io.ReadCloser, error) {
	if !b.replayable() {
		return nil, errBodyGone
	}
	return b.attempt(), nil
}

type attemptBody struct {
	b   *replayBody
	gen int
	pos int // bytes this attempt has read
}

func (a *attemptBody) Read(p []byte) (int, error) {
	if n, done, err := a.fromKept(p); done {
		return n, err
	}
	b := a.b
	b.readMu.Lock()
	defer b.readMu.Unlock()
	// Another attempt may have read while this one waited.
	if n, done, err := a.fromKept(p); done {
		return n, err
	}
	n, err := b.src.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > 0 && !b.over {
		if len(b.kept)+n > b.max {
			b.over, b.kept = true, nil
		} else {
			b.kept = append(b.kept, p[:n]...)
		}
	}
	b.read += n
	if err != nil {
		b.srcErr = err
	}
	if a.gen != b.gen {
		return 0, errSuperseded // what it read is kept for the new one
	}
	a.pos += n
	return n, err
}

// fromKept serves a read from the bytes kept, or reports done false when
// the attempt has read all that was read from the client so far.
func (a *attemptBody) fromKept(p []byte) (n int, done bool, err error) {
	b := a.b
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case a.gen != b.gen:
		return 0, true, errSuperseded
	case a.pos < b.read && b.over:
		return 0, true, errBodyGone
	case a.pos < b.read:
		n = copy(p, b.kept[a.pos:])
		a.pos += n
		return n, true, nil
	case b.srcErr != nil:
		return 0, true, b.srcErr
	}
	return 0, false, nil
}

// Close does not close the client's body: a later attempt may read it.
func (a *attemptBody) Close() error { return nil }
