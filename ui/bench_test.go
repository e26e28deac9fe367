package ui

import (
	"bytes"
	"testing"

	"shoal/fl"
)

// BenchmarkLivePush is what one push of the events stream costs the run's process: the
// snapshot and the live fragment (charts and table) of a DP run after 100 rounds.
func BenchmarkLivePush(b *testing.B) {
	live, err := NewLive(LiveInfo{ID: "run", Rounds: 200, Config: []byte("rounds = 200\ndp = \"central\"\nmax-epsilon = 8.0\ndelta = 1e-5\n")})
	if err != nil {
		b.Fatal(err)
	}
	for r := 1; r <= 100; r++ {
		live.Round(fl.RoundReport{Round: r, Accuracy: 0.9, Loss: 0.3, TrainLoss: 0.2, Participants: 100, Sampled: 101, Dropped: 1,
			Epsilon: 0.05 * float64(r), Delta: 1e-5, ClipNorm: 0.5, Seconds: 0.4,
			Stages: []fl.StageTime{{Stage: "fit", Seconds: 0.3}, {Stage: "aggregate", Seconds: 0.05}, {Stage: "evaluate", Seconds: 0.05}}})
	}
	h, err := New(live)
	if err != nil {
		b.Fatal(err)
	}
	var size int
	for b.Loop() {
		run := h.snapshot("run")
		var frag bytes.Buffer
		if err := h.tmpl.ExecuteTemplate(&frag, "overview-live", page{Run: run, Charts: runCharts(run), Live: true}); err != nil {
			b.Fatal(err)
		}
		size = frag.Len()
	}
	b.ReportMetric(float64(size), "bytes/push")
}

// BenchmarkLiveRound is what the engine's OnRound hook costs with the dashboard on.
func BenchmarkLiveRound(b *testing.B) {
	live, err := NewLive(LiveInfo{ID: "run", Rounds: 1 << 30, Config: []byte("rounds = 1\n")})
	if err != nil {
		b.Fatal(err)
	}
	rep := fl.RoundReport{Accuracy: 0.9, Stages: []fl.StageTime{{Stage: "fit", Seconds: 0.3}}}
	r := 0
	for b.Loop() {
		r++
		rep.Round = r
		live.Round(rep)
	}
}
