package tier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"shoal/transport/grpctransport"
)

// Keys is where a population lives in etcd. Everything of population P is under /shoal/P/.
type Keys struct{ Population string }

func (k Keys) prefix() string   { return path.Join("/shoal", k.Population) + "/" }
func (k Keys) Election() string { return k.prefix() + "election" }
func (k Keys) Run() string      { return k.prefix() + "run" }
func (k Keys) Round() string    { return k.prefix() + "round" }
func (k Keys) Edges() string    { return k.prefix() + "edges/" }
func (k Keys) Edge(name string) string {
	return k.Edges() + name
}

// ValidPopulation checks a population name: it becomes an etcd key segment.
func ValidPopulation(p string) error {
	if p == "" || len(p) > 64 || strings.ContainsAny(p, "/ \t\n") {
		return fmt.Errorf("population name %q: want 1–64 characters without '/' or spaces", p)
	}
	return nil
}

// Dial connects to etcd and waits until it answers, retrying with exponential backoff (and a
// message each time) until ctx is done: an edge or coordinator started before etcd waits for
// it instead of crashing.
func Dial(ctx context.Context, endpoints []string, log *slog.Logger) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	wait := 250 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Get(pctx, "/shoal/ping")
		cancel()
		if err == nil {
			return cli, nil
		}
		if ctx.Err() != nil {
			cli.Close()
			return nil, fmt.Errorf("etcd %s unreachable: %w", strings.Join(endpoints, ","), err)
		}
		d := wait/2 + rand.N(wait/2+1)
		log.Warn("etcd unreachable; retrying", "endpoints", strings.Join(endpoints, ","), "err", err, "in", d.Round(time.Millisecond))
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// RunRecord is the run of a population as etcd holds it: what a standby coordinator needs to
// take over the same run, and what edges announce to devices. It is written once, by the
// coordinator that creates the run, and marked complete at its end.
type RunRecord struct {
	StoreRun        int64                    `json:"store_run"` // the run's id in the run store
	Name            string                   `json:"name"`      // the run id devices see
	SecureSum       string                   `json:"secure_sum,omitempty"`
	SecureSumParams []byte                   `json:"secure_sum_params,omitempty"`
	Model           *grpctransport.ModelSpec `json:"model,omitempty"`
	Complete        bool                     `json:"complete,omitempty"`
}

// LoadRun reads the population's run record (nil, 0 if there is none) and its mod revision.
func LoadRun(ctx context.Context, cli *clientv3.Client, k Keys) (*RunRecord, int64, error) {
	resp, err := cli.Get(ctx, k.Run())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: run record: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	var r RunRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return nil, 0, fmt.Errorf("etcd: run record %s: %w", k.Run(), err)
	}
	return &r, resp.Kvs[0].ModRevision, nil
}

// WaitRun blocks until the population has a run record and returns it (edges start before the
// first coordinator has created the run).
func WaitRun(ctx context.Context, cli *clientv3.Client, k Keys) (*RunRecord, error) {
	for {
		r, rev, err := LoadRun(ctx, cli, k)
		if err != nil || r != nil {
			return r, err
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := cli.Watch(wctx, k.Run(), clientv3.WithRev(rev+1))
		select {
		case <-ch:
		case <-time.After(5 * time.Second): // a missed event costs at most this
		case <-ctx.Done():
		}
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// Leadership is this process's term as the population's active coordinator.
type Leadership struct {
	cli      *clientv3.Client
	session  *concurrency.Session
	election *concurrency.Election
	keys     Keys
}

// Campaign blocks while another coordinator of the population is active (standby), and returns
// once this one is elected. ttl is the lease: a coordinator that dies (SIGKILL, partition) is
// replaced within it.
func Campaign(ctx context.Context, cli *clientv3.Client, k Keys, name string, ttl time.Duration) (*Leadership, error) {
	secs := int(ttl.Round(time.Second) / time.Second)
	if secs < 1 {
		return nil, fmt.Errorf("lease TTL %v: want ≥ 1s", ttl)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(secs))
	if err != nil {
		return nil, fmt.Errorf("etcd session: %w", err)
	}
	e := concurrency.NewElection(s, k.Election())
	if err := e.Campaign(ctx, name); err != nil {
		s.Close()
		return nil, fmt.Errorf("etcd election %s: %w", k.Election(), err)
	}
	l := &Leadership{cli: cli, session: s, election: e, keys: k}
	// A lease lost while waiting (etcd unreachable for the TTL) deletes the key the campaign
	// returned for: check that it is still ours before acting as the leader.
	if err := l.Check(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("etcd election %s: elected, then: %w", k.Election(), err)
	}
	return l, nil
}

// Term is the creation revision of this coordinator's election key: it grows with every new
// leader, and edges refuse requests of an older term.
func (l *Leadership) Term() int64 { return l.election.Rev() }

// Lost is closed when the lease is gone (etcd unreachable for the TTL, or revoked): another
// coordinator may already lead, and this one must stop.
func (l *Leadership) Lost() <-chan struct{} { return l.session.Done() }

// ErrNotLeader is returned by a fenced write when this coordinator no longer leads.
var ErrNotLeader = errors.New("no longer the population's coordinator")

// Put writes key=value only while this coordinator still holds its election key (a fenced
// write: a deposed coordinator cannot overwrite its successor's metadata).
func (l *Leadership) Put(ctx context.Context, key string, value []byte) error {
	return l.fenced(ctx, clientv3.OpPut(key, string(value)))
}

// Check confirms that this coordinator still leads (wrapping ErrNotLeader if not).
func (l *Leadership) Check(ctx context.Context) error { return l.fenced(ctx) }

// fenced runs ops only while this coordinator holds its election key. A request that fails
// without an answer (etcd electing a new leader after losing a member: "request timed out") is
// retried until ctx ends or the lease is lost: losing one etcd member must not stop the run.
func (l *Leadership) fenced(ctx context.Context, ops ...clientv3.Op) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		resp, err := l.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(l.election.Key()), "=", l.election.Rev())).
			Then(ops...).Commit()
		if err == nil && !resp.Succeeded {
			return ErrNotLeader
		}
		if err == nil {
			return nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("etcd: %w", err)
		case <-l.session.Done():
			return fmt.Errorf("%w: lease lost (%v)", ErrNotLeader, err)
		}
	}
}

// PutJSON is Put with value encoded as JSON.
func (l *Leadership) PutJSON(ctx context.Context, key string, value any) error {
	b, err := json.Marshal(value)
	if err != nil {
		return err
	}
	return l.Put(ctx, key, b)
}

// Resign gives up leadership (a clean stop hands over at once instead of after the TTL).
func (l *Leadership) Resign(ctx context.Context) {
	_ = l.election.Resign(ctx)
	_ = l.session.Close()
}

// RoundMeta is the small per-round metadata the coordinator publishes: one entry per group,
// never one per device.
type RoundMeta struct {
	Round     int         `json:"round"`
	Term      int64       `json:"term"`
	Committed int         `json:"committed"` // the last round committed to the run store
	Groups    []GroupMeta `json:"groups,omitempty"`
	// Population and Demand steer devices' check-ins (PaceWindow).
	Population   int     `json:"population"`
	Demand       int     `json:"demand"`
	RoundSeconds float64 `json:"round_seconds"`
	Edges        int     `json:"edges"`
}

// GroupMeta is one aggregation group of a round.
type GroupMeta struct {
	Edge  string `json:"edge"`
	Group int    `json:"group"`
	Size  int    `json:"size"`
}

// LoadRoundMeta reads the round metadata (nil if none yet).
func LoadRoundMeta(ctx context.Context, cli *clientv3.Client, k Keys) (*RoundMeta, error) {
	resp, err := cli.Get(ctx, k.Round())
	if err != nil {
		return nil, fmt.Errorf("etcd: round metadata: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var m RoundMeta
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		return nil, fmt.Errorf("etcd: round metadata: %w", err)
	}
	return &m, nil
}
