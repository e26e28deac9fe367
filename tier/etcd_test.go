package tier

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"shoal/tier/tiertest"
)

// One coordinator leads, the other waits; when the leader's lease lapses (its process died:
// here its keepalives stop) the standby is elected within the TTL, with a higher term, and the
// old leader's fenced writes are refused. Losing one of three etcd members changes nothing.
func TestElectionTakeoverAndFencing(t *testing.T) {
	c := tiertest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := Keys{Population: "test"}
	const ttl = 3 * time.Second
	log := slog.New(slog.DiscardHandler)
	cliA, err := Dial(ctx, strings.Split(c.Endpoints(), ","), log)
	if err != nil {
		t.Fatal(err)
	}
	defer cliA.Close()
	cliB, err := Dial(ctx, strings.Split(c.Endpoints(), ","), log)
	if err != nil {
		t.Fatal(err)
	}
	defer cliB.Close()
	a, err := Campaign(ctx, cliA, k, "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, k.Round(), []byte(`{"round":1}`)); err != nil {
		t.Fatalf("leader's fenced write: %v", err)
	}
	elected := make(chan *Leadership, 1)
	go func() {
		b, err := Campaign(ctx, cliB, k, "b", ttl)
		if err != nil {
			t.Error(err)
		}
		elected <- b
	}()
	select {
	case <-elected:
		t.Fatal("standby elected while the leader is alive")
	case <-time.After(3 * time.Second):
	}
	c.Members[2].Kill() // one of three etcd members down: the election goes on
	// (If the killed member led the etcd cluster, the new etcd leader renews every lease once:
	// give it that time, so that what is measured below is the coordinator's lease alone.)
	time.Sleep(2500 * time.Millisecond)
	select {
	case <-elected:
		t.Fatal("standby elected while the leader is alive (after an etcd member was lost)")
	default:
	}
	a.session.Orphan() // the leader stops renewing its lease, as a killed process would
	lapsed := time.Now()
	var b *Leadership
	select {
	case b = <-elected:
	case <-time.After(10 * time.Second):
		t.Fatal("standby not elected within 10 s of the leader's lease lapsing")
	}
	if took := time.Since(lapsed); took > ttl+2*time.Second {
		t.Fatalf("takeover took %v with a %v lease", took, ttl)
	}
	if b.Term() <= a.Term() {
		t.Fatalf("new term %d not above the old %d", b.Term(), a.Term())
	}
	if err := a.Put(ctx, k.Round(), []byte(`{"round":2}`)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed leader's write: %v, want ErrNotLeader", err)
	}
	if err := b.PutJSON(ctx, k.Round(), RoundMeta{Round: 2, Term: b.Term()}); err != nil {
		t.Fatal(err)
	}
	m, err := LoadRoundMeta(ctx, cliB, k)
	if err != nil || m.Round != 2 || m.Term != b.Term() {
		t.Fatalf("round metadata %+v, %v", m, err)
	}
}

// Edges register under leases; the coordinator's watch sees them come and go.
func TestMembership(t *testing.T) {
	c := tiertest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k := Keys{Population: "p"}
	cli := c.Client(t)
	defer cli.Close()
	log := slog.New(slog.DiscardHandler)
	m, err := WatchMembers(ctx, cli, k, log)
	if err != nil {
		t.Fatal(err)
	}
	ectx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		_ = Register(ectx, cli, k, EdgeInfo{Name: "e1", Addr: "127.0.0.1:1"}, 2*time.Second, log)
		close(done)
	}()
	waitFor(t, m, func(e []EdgeInfo) bool { return len(e) == 1 && e[0].Name == "e1" })
	stop()
	<-done
	waitFor(t, m, func(e []EdgeInfo) bool { return len(e) == 0 })
}

func waitFor(t *testing.T, m *Members, ok func([]EdgeInfo) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !ok(m.Edges()) {
		select {
		case <-m.Changed():
		case <-deadline:
			t.Fatalf("membership %+v", m.Edges())
		}
	}
}
