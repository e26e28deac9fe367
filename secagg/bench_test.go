package secagg

import (
	"testing"
)

// benchRound runs one round of n clients × dim entries with `dropout` of them leaving after
// ShareKeys (the costliest point for the server).
func benchRound(b *testing.B, n, dim int, graph GraphKind, degree int, dropout float64) {
	var k, t int
	var err error
	if degree > 0 {
		k = degree
		t, err = PlanThreshold(n, k, dropout, graph)
	} else {
		k, t, err = PlanGraph(n, dropout, 0.05, graph, false)
	}
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Round: 1, Clients: n, Dim: dim, Bits: 16, ClipRange: 1, MaxWeight: 100,
		Graph: graph, Degree: k, Threshold: t, GraphSeed: [32]byte{7}}
	drop := dropSet(n, int(dropout*float64(n)), StageMasked, 1)
	in := inputs(dim)
	b.ResetTimer()
	var rep *RoundReport
	for b.Loop() {
		rep, err = RunRound(RoundSpec{Config: cfg, Input: in, Drop: drop, Rand: seeded(1)})
		if err != nil {
			b.Fatal(err)
		}
	}
	var cs float64
	for _, id := range rep.Completed {
		cs += rep.ClientSeconds[id]
	}
	b.ReportMetric(rep.ServerSeconds, "server-s")
	b.ReportMetric(cs/float64(len(rep.Completed)), "client-s")
}

// BenchmarkRoundHarary100 is Flower's SecAgg+ setting: 100 clients × 100,000, 14 neighbours.
func BenchmarkRoundHarary100(b *testing.B) { benchRound(b, 100, 100_000, GraphHarary, 14, 0.1) }

// BenchmarkRoundComplete100 is Flower's complete-graph setting: 100 clients × 10,000.
func BenchmarkRoundComplete100(b *testing.B) { benchRound(b, 100, 10_000, GraphComplete, 0, 0.1) }

// BenchmarkRoundComplete200 is a mid-size complete-graph round (200 × 100,000, 10% dropout).
func BenchmarkRoundComplete200(b *testing.B) {
	benchRound(b, 200, 100_000, GraphComplete, 0, 0.1)
}
