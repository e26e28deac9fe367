package postgres

import (
	"context"
	"testing"

	"shoal/store/postgres/pgtest"
)

// benchParams is the reference model of store's benchmarks (the MNIST MLP, 797 KB).
const benchParams = 199_210

func benchStore(b *testing.B) (*Store, int64) {
	s, err := Open(context.Background(), pgtest.NewStore(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	run, err := s.CreateRun([]byte(`{"bench":true}`))
	if err != nil {
		b.Fatal(err)
	}
	return s, run
}

// BenchmarkCommitRound is store.BenchmarkCommitRound/model on PostgreSQL (a local server on
// 127.0.0.1, fsync on): one durable round per iteration.
func BenchmarkCommitRound(b *testing.B) {
	s, run := benchStore(b)
	model := testModel(1, benchParams)
	metrics := []byte(`{"round":1,"loss":0.31,"accuracy":0.91,"participants":100,"dropouts":3}`)
	acct := []byte(`{"mechanism":"gaussian","noise_multiplier":1.1,"sample_rate":0.01,"steps":1}`)
	b.SetBytes(4 * benchParams)
	b.ResetTimer()
	for r := 1; r <= b.N; r++ {
		model[0] = float32(r)
		if err := s.CommitRound(run, r, model, metrics, acct, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLastRound reads the latest checkpoint back (what --resume costs).
func BenchmarkLastRound(b *testing.B) {
	s, run := benchStore(b)
	model := testModel(1, benchParams)
	for r := 1; r <= 20; r++ {
		if err := s.CommitRound(run, r, model, []byte(`{}`), []byte(`{}`), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(4 * benchParams)
	b.ResetTimer()
	for b.Loop() {
		if r, m, _, _, err := s.LastRound(run); err != nil || r != 20 || len(m) != benchParams {
			b.Fatal(r, err)
		}
	}
}
