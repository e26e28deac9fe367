package tier

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EdgeInfo is what an edge registers about itself.
type EdgeInfo struct {
	Name string `json:"name"`
	// Addr is where the coordinator reaches the edge's Edge service.
	Addr string `json:"addr"`
	// Devices is where devices connect (for operators and docs; devices find edges by DNS or a
	// list).
	Devices string `json:"devices"`
}

// Register keeps info under the population's edges/ prefix, on a lease of ttl, until ctx is
// done: if the lease is lost (etcd unreachable longer than ttl) it registers again as soon as
// etcd answers. The key disappears within ttl of the edge's death.
func Register(ctx context.Context, cli *clientv3.Client, k Keys, info EdgeInfo, ttl time.Duration, log *slog.Logger) error {
	val, err := json.Marshal(info)
	if err != nil {
		return err
	}
	secs := max(int64(ttl/time.Second), 1)
	for {
		err := registerOnce(ctx, cli, k.Edge(info.Name), string(val), secs)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("edge registration lost; registering again", "err", err)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
}

func registerOnce(ctx context.Context, cli *clientv3.Client, key, val string, secs int64) error {
	lease, err := cli.Grant(ctx, secs)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	if _, err := cli.Put(ctx, key, val, clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	alive, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keepalive: %w", err)
	}
	for range alive {
	}
	if ctx.Err() != nil {
		// A clean stop removes the key at once instead of after the TTL.
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = cli.Revoke(rctx, lease.ID)
		cancel()
		return ctx.Err()
	}
	return fmt.Errorf("lease %x expired", lease.ID)
}

// Members is the coordinator's live view of the population's edges, kept by an etcd watch.
type Members struct {
	mu      sync.Mutex
	edges   map[string]EdgeInfo
	changed chan struct{}
}

// WatchMembers lists the registered edges and follows changes until ctx is done.
func WatchMembers(ctx context.Context, cli *clientv3.Client, k Keys, log *slog.Logger) (*Members, error) {
	m := &Members{edges: map[string]EdgeInfo{}, changed: make(chan struct{})}
	rev, err := m.list(ctx, cli, k)
	if err != nil {
		return nil, err
	}
	go m.follow(ctx, cli, k, rev, log)
	return m, nil
}

func (m *Members) list(ctx context.Context, cli *clientv3.Client, k Keys) (int64, error) {
	resp, err := cli.Get(ctx, k.Edges(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("etcd: edges: %w", err)
	}
	edges := map[string]EdgeInfo{}
	for _, kv := range resp.Kvs {
		var e EdgeInfo
		if json.Unmarshal(kv.Value, &e) == nil && e.Name != "" {
			edges[e.Name] = e
		}
	}
	m.set(edges)
	return resp.Header.Revision, nil
}

func (m *Members) set(edges map[string]EdgeInfo) {
	m.mu.Lock()
	m.edges = edges
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

func (m *Members) follow(ctx context.Context, cli *clientv3.Client, k Keys, rev int64, log *slog.Logger) {
	for ctx.Err() == nil {
		for resp := range cli.Watch(ctx, k.Edges(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if resp.Err() != nil {
				break
			}
			m.mu.Lock()
			edges := make(map[string]EdgeInfo, len(m.edges))
			for n, e := range m.edges {
				edges[n] = e
			}
			m.mu.Unlock()
			for _, ev := range resp.Events {
				name := strings.TrimPrefix(string(ev.Kv.Key), k.Edges())
				if ev.Type == clientv3.EventTypeDelete {
					delete(edges, name)
					log.Info("edge left", "edge", name)
					continue
				}
				var e EdgeInfo
				if json.Unmarshal(ev.Kv.Value, &e) == nil && e.Name != "" {
					if _, known := edges[name]; !known {
						log.Info("edge joined", "edge", name, "addr", e.Addr)
					}
					edges[name] = e
				}
			}
			m.set(edges)
			rev = resp.Header.Revision
		}
		if ctx.Err() != nil {
			return
		}
		// The watch broke (compaction, etcd restart): list again from scratch.
		time.Sleep(200 * time.Millisecond)
		if r, err := m.list(ctx, cli, k); err == nil {
			rev = r
		}
	}
}

// Edges returns the registered edges, sorted by name.
func (m *Members) Edges() []EdgeInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]EdgeInfo, 0, len(m.edges))
	for _, e := range m.edges {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b EdgeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changed is closed at the next change of the membership.
func (m *Members) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}
