package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
)

// An engine is the cache the go-control-plane server asks for responses,
// plus how the Server feeds it: one snapshot for every node.
type engine interface {
	cache.Cache
	// setSnapshot serves snap to every node, now and later.
	setSnapshot(ctx context.Context, snap *cache.Snapshot) error
	// nodeSeen is called when a node opens its first stream, before the
	// cache sees the stream's first request.
	nodeSeen(id string)
	// nodeGone is called when a node's last stream has closed.
	nodeGone(id string)
	// nodeCount returns the number of nodes served.
	nodeCount() int
}

// snapshotEngine is go-control-plane's SnapshotCache with the same
// snapshot set for every node.
//
// It is created with ads=false: in ADS mode the SnapshotCache answers a
// state-of-the-world request that names resources only when the names
// cover every resource of the type in the snapshot, which a proxyless gRPC
// client (it asks for the one listener it dials) never does once the
// table has a second service. Without ADS mode the cache answers with
// the named resources, and the order in which types are answered after a
// push is not fixed; skiff's clients (the router, gRPC) accept any order.
type snapshotEngine struct {
	cache.SnapshotCache

	mu      sync.Mutex
	current *cache.Snapshot
	nodes   map[string]bool
}

func newSnapshotEngine(l log.Logger) *snapshotEngine {
	return &snapshotEngine{
		SnapshotCache: cache.NewSnapshotCache(false, cache.IDHash{}, l),
		nodes:         map[string]bool{},
	}
}

func (e *snapshotEngine) setSnapshot(ctx context.Context, snap *cache.Snapshot) error {
	// Hash every resource once, here, rather than under the cache's lock
	// when the first delta watch needs it: every node shares snap.
	if err := snap.ConstructVersionMap(); err != nil {
		return fmt.Errorf("hash resources: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.current = snap
	var errs []error
	for id := range e.nodes {
		if err := e.SetSnapshot(ctx, id, snap); err != nil {
			errs = append(errs, fmt.Errorf("set snapshot of node %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (e *snapshotEngine) nodeSeen(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nodes[id] = true
	if e.current != nil {
		// Cannot fail: the node has no watch yet to respond to.
		_ = e.SetSnapshot(context.Background(), id, e.current)
	}
}

func (e *snapshotEngine) nodeGone(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.nodes, id)
	e.ClearSnapshot(id)
}

func (e *snapshotEngine) nodeCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.nodes)
}
