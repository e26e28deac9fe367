package secagg

import (
	"context"
	"errors"
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func smallBenchConfig() BenchConfig {
	return BenchConfig{Clients: 12, Dim: 64, Bits: 16, Graph: GraphComplete, Dropout: 0.25,
		DropoutStage: StageMasked, MaxDropout: 0.25, MaxCorrupt: 0.05, Seed: 7}
}

// TestRunBenchSumWithinQuantisationBound runs small benchmark rounds and checks the unmasked
// sum twice: exactly in the ring (BenchReport.Correct) and, decoded, against the float sum of
// the survivors' synthetic updates, within the stochastic rounding error of one quantisation
// step per survivor and entry.
func TestRunBenchSumWithinQuantisationBound(t *testing.T) {
	harary := smallBenchConfig()
	harary.Clients, harary.Graph, harary.Degree, harary.Dropout, harary.MaxDropout, harary.DropoutStage = 30, GraphHarary, 14, 0.1, 0.1, StageUnmask
	malicious := smallBenchConfig()
	malicious.Clients, malicious.Malicious, malicious.MaxCorrupt, malicious.DropoutStage, malicious.Seed = 10, true, 0.1, StageShare, 0
	for name, cfg := range map[string]BenchConfig{"complete": smallBenchConfig(), "harary": harary, "malicious": malicious} {
		t.Run(name, func(t *testing.T) {
			gc := debug.SetGCPercent(100)
			defer debug.SetGCPercent(gc)
			rep, err := RunBench(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if after := debug.SetGCPercent(100); after != 100 {
				t.Errorf("GC percent after the run is %d, want it restored to 100", after)
			}
			checkBenchReport(t, cfg, rep)
		})
	}
}

func checkBenchReport(t *testing.T, cfg BenchConfig, rep *BenchReport) {
	t.Helper()
	wantDropped := int(cfg.Dropout * float64(cfg.Clients))
	wantSurvivors := cfg.Clients - wantDropped
	if cfg.DropoutStage == StageUnmask {
		wantSurvivors = cfg.Clients // they sent their masked input before leaving
	}
	if !rep.Correct || rep.Dropped != wantDropped || rep.Survivors != wantSurvivors || rep.Completed != cfg.Clients-wantDropped {
		t.Fatalf("correct %v, dropped %d, survivors %d, completed %d; want true, %d, %d, %d",
			rep.Correct, rep.Dropped, rep.Survivors, rep.Completed, wantDropped, wantSurvivors, cfg.Clients-wantDropped)
	}
	if cfg.Degree != 0 && (rep.Config.Degree != cfg.Degree || rep.Config.Graph != cfg.Graph) {
		t.Fatalf("forced %v degree %d, planned %v degree %d", cfg.Graph, cfg.Degree, rep.Config.Graph, rep.Config.Degree)
	}
	if rep.Config.Malicious() != cfg.Malicious || rep.Config.Threshold < 1 || rep.Config.Threshold > rep.Config.Degree {
		t.Fatalf("planned config %+v", rep.Config)
	}
	plain, weight := make([]float64, cfg.Dim), 0.0
	input := benchInput(context.Background(), cfg.Seed, cfg.Dim)
	for _, id := range rep.Round.Result.Survivors {
		u, w, err := input(id)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range u {
			plain[i] += float64(x)
		}
		weight += w
	}
	levels := rep.Config.quantLevels()
	n := float64(rep.Survivors)
	bound := n * 2 * rep.Config.ClipRange / levels
	for i, s := range rep.Round.Result.Sum {
		if math.Abs(s-plain[i]) > bound {
			t.Fatalf("entry %d: secure sum %v, plain %v, bound %v", i, s, plain[i], bound)
		}
	}
	if wb := n * rep.Config.MaxWeight / levels; math.Abs(rep.Round.Result.Weight-weight) > wb {
		t.Fatalf("weight: secure %v, plain %v, bound %v", rep.Round.Result.Weight, weight, wb)
	}
	if rep.ClientSeconds <= 0 || rep.ServerSeconds <= 0 || rep.ClientUploadBytes <= float64(rep.PlainUploadBytes) ||
		rep.PRG.KeystreamBytesPerSecond <= 0 || rep.PRG.ServerBytes <= 0 {
		t.Fatalf("implausible costs %+v", rep)
	}
	if _, ok := rep.Stages[StageMasked]; !ok {
		t.Fatalf("no masked stage in %v", rep.Stages)
	}
}

// TestNewBenchSeeded checks that a seed fixes the plan and the dropouts, and that without one
// the clients' keys come from crypto/rand.
func TestNewBenchSeeded(t *testing.T) {
	cfg := smallBenchConfig()
	a, err := NewBench(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBench(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Config().GraphSeed != b.Config().GraphSeed || len(a.spec.Drop) != a.Dropped() || a.Dropped() != 3 || a.spec.Rand == nil {
		t.Fatalf("seeded benches differ or lack seeded randomness: %d dropped", a.Dropped())
	}
	for id, st := range a.spec.Drop {
		if b.spec.Drop[id] != st {
			t.Fatalf("client %d drops at %v in one bench, %v in the other", id, st, b.spec.Drop[id])
		}
	}
	cfg.Seed = 0
	c, err := NewBench(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.spec.Rand != nil {
		t.Fatal("seed 0 should leave the clients' keys to crypto/rand")
	}
}

func TestNewBenchRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		change func(*BenchConfig)
		want   string
	}{
		{func(c *BenchConfig) { c.Clients = 1 }, "clients 1 out of range"},
		{func(c *BenchConfig) { c.Dim = 0 }, "dim 0 out of range"},
		{func(c *BenchConfig) { c.Graph = 0 }, "unknown graph"},
		{func(c *BenchConfig) { c.Dropout = 1 }, "dropout 1 not in [0, 1)"},
		{func(c *BenchConfig) { c.Dropout = math.NaN() }, "dropout NaN"},
		{func(c *BenchConfig) { c.DropoutStage = StageDone }, "dropout stage done"},
		{func(c *BenchConfig) { c.MaxDropout = 0.1 }, "max dropout 0.1 is below dropout 0.25"},
		{func(c *BenchConfig) { c.Degree = 4 }, "complete graph of 12 clients has degree 11"},
		{func(c *BenchConfig) { c.Graph, c.Degree = GraphHarary, -2 }, "plan threshold: degree -2"},
		{func(c *BenchConfig) { c.Graph, c.Degree = GraphHarary, 5 }, "Harary degree 5 must be even"},
		{func(c *BenchConfig) { c.Bits = 30 }, "ring bits"},
		{func(c *BenchConfig) { c.MaxCorrupt = 0.9 }, "plan graph"},
	} {
		cfg := smallBenchConfig()
		tc.change(&cfg)
		_, err := NewBench(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", cfg, err, tc.want)
		}
	}
}

func TestRunBenchCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunBench(ctx, smallBenchConfig()); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}
