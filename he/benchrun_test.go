package he

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
)

func smallBenchConfig(t *testing.T) BenchConfig {
	return BenchConfig{Params: testParams(t), Clients: 6, Committee: 4, Threshold: 2, Dim: 300,
		Dropout: 0.3, CommitteeOffline: 1, Seed: 3}
}

// TestRunBenchWithinErrorBound runs a small benchmark and checks that the decrypted sum is
// within the parameters' stated bound and that every upload was counted.
func TestRunBenchWithinErrorBound(t *testing.T) {
	cfg := smallBenchConfig(t)
	b, err := NewBench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := b.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Correct || rep.MaxAbsErrorSum > rep.ErrorBoundSum || rep.ErrorBoundSum != cfg.Params.MaxAbsError(cfg.Threshold) {
		t.Fatalf("correct %v: sum error %g, bound %g", rep.Correct, rep.MaxAbsErrorSum, rep.ErrorBoundSum)
	}
	if rep.MaxAbsError > 1e-6 {
		t.Fatalf("mean error %g", rep.MaxAbsError)
	}
	// The seed fixes the synthetic round: regenerating it gives the same uploads.
	var acc benchUpdates
	for range b.updates(context.Background(), &acc) {
	}
	if rep.Uploaded != acc.uploaded || rep.Uploaded < DefaultMinContributors || rep.Uploaded > cfg.Clients {
		t.Fatalf("uploaded %d, regenerated round has %d", rep.Uploaded, acc.uploaded)
	}
	if rep.Params != cfg.Params || rep.Ciphertexts != 1 || rep.PlainUploadBytes != 4*cfg.Dim ||
		rep.ClientUploadBytes < cfg.Params.CiphertextBytes() ||
		rep.Expansion <= 1 || rep.DecryptShareBytes <= 0 || rep.SetupSeconds <= 0 ||
		rep.ApprovalRequestBytes <= 0 || rep.ApprovalBytes <= 0 || rep.MemberShareCPUSeconds <= 0 ||
		rep.DecryptRequestBytes < rep.Uploaded*cfg.Params.CiphertextBytes()/2 {
		t.Fatalf("implausible report %+v", rep)
	}
}

// TestBenchReportFlagsWrongSum feeds the comparison a decrypted aggregate off by more than
// the bound, and one missing a contributor: neither is correct.
func TestBenchReportFlagsWrongSum(t *testing.T) {
	b := &Bench{cfg: BenchConfig{Clients: 3, Committee: 2, Threshold: 2, Dim: 2}, params: testParams(t)}
	acc := &benchUpdates{plainSum: []float64{1, -2}, plainWeight: 3, uploaded: 2}
	stats := &RoundStats{Uploads: 2, UploadBytes: 100}
	bound := b.params.MaxAbsError(2)
	good := &Aggregate{Contributors: []PartyID{1, 2}, Sum: []float64{1 + bound/2, -2}, TotalWeight: 3}
	if rep := b.report(good, stats, acc); !rep.Correct || math.Abs(rep.MaxAbsErrorSum-bound/2) > 1e-12 {
		t.Fatalf("within bound: correct %v, error %g", rep.Correct, rep.MaxAbsErrorSum)
	}
	off := &Aggregate{Contributors: []PartyID{1, 2}, Sum: []float64{1, -2 - 2*bound}, TotalWeight: 3}
	if rep := b.report(off, stats, acc); rep.Correct || math.Abs(rep.MaxAbsErrorSum-2*bound) > 1e-12 {
		t.Fatalf("off by 2×bound: correct %v, error %g", rep.Correct, rep.MaxAbsErrorSum)
	}
	missing := &Aggregate{Contributors: []PartyID{1}, Sum: []float64{1, -2}, TotalWeight: 3}
	if rep := b.report(missing, stats, acc); rep.Correct {
		t.Fatal("an aggregate missing a contributor is reported correct")
	}
}

func TestNewBenchRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		change func(*BenchConfig)
		want   string
	}{
		{func(c *BenchConfig) { c.Clients = 2 }, "clients 2 < the minimum of contributors 3"},
		{func(c *BenchConfig) { c.Clients, c.MinContributors = 4, 5 }, "clients 4 < the minimum of contributors 5"},
		{func(c *BenchConfig) { c.MinContributors = 1 }, "minimum of 1 contributors"},
		{func(c *BenchConfig) { c.Committee = 7 }, "committee 7 not in [2, clients=6]"},
		{func(c *BenchConfig) { c.Threshold = 5 }, "threshold 5 not in [2, committee=4]"},
		{func(c *BenchConfig) { c.Threshold = 1 }, "threshold 1"},
		{func(c *BenchConfig) { c.Dim = 0 }, "dim 0 not in"},
		{func(c *BenchConfig) { c.Dropout = 1 }, "dropout 1 not in [0, 1)"},
		{func(c *BenchConfig) { c.Dropout = math.NaN() }, "dropout NaN"},
		{func(c *BenchConfig) { c.CommitteeOffline = 5 }, "committee offline 5 not in [0, committee=4]"},
		{func(c *BenchConfig) { c.ApprovalOffline = 2 }, "approval offline 2 not in [0, committee offline=1]"},
	} {
		cfg := smallBenchConfig(t)
		tc.change(&cfg)
		_, err := RunBench(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", cfg, err, tc.want)
		}
	}
}

// TestRunBenchTooFewOnline takes more committee members offline than the threshold allows:
// the round is abandoned with ErrNotEnoughMembers.
func TestRunBenchTooFewOnline(t *testing.T) {
	cfg := smallBenchConfig(t)
	cfg.Dim, cfg.Threshold, cfg.CommitteeOffline = 10, 3, 2
	_, err := RunBench(context.Background(), cfg)
	if !errors.Is(err, ErrNotEnoughMembers) || !strings.HasPrefix(err.Error(), "encrypted round: ") {
		t.Fatalf("error %v, want an encrypted round error wrapping ErrNotEnoughMembers", err)
	}
}

// TestRunBenchApprovalQuorum: members unreachable already when the round closes do not
// approve it; below the approval quorum nothing is decrypted, even with T members online.
func TestRunBenchApprovalQuorum(t *testing.T) {
	cfg := smallBenchConfig(t)
	cfg.Dim, cfg.Committee, cfg.Threshold, cfg.CommitteeOffline, cfg.ApprovalOffline = 10, 4, 2, 1, 1
	if _, err := RunBench(context.Background(), cfg); err != nil { // quorum ⌈6/2⌉ = 3 of the 3 left
		t.Fatal(err)
	}
	cfg.CommitteeOffline, cfg.ApprovalOffline = 2, 2 // 2 online ≥ T, but 2 approvals < 3
	_, err := RunBench(context.Background(), cfg)
	if !errors.Is(err, ErrNotEnoughMembers) || !strings.Contains(err.Error(), "quorum 3") {
		t.Fatalf("error %v, want ErrNotEnoughMembers for want of the approval quorum", err)
	}
}

func TestNewBenchCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := smallBenchConfig(t)
	cfg.Committee, cfg.Threshold, cfg.CommitteeOffline = 2, 2, 0
	if _, err := NewBench(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestBenchOverheadReport runs `shoal bench he`'s benchmark at the size given by the
// environment (HE_BENCH="clients,committee,threshold,dim") and prints its report as JSON: the
// measurement behind BENCHMARKS.md's verification-overhead table. Skipped unless HE_BENCH is
// set.
func TestBenchOverheadReport(t *testing.T) {
	spec := os.Getenv("HE_BENCH")
	if spec == "" {
		t.Skip("set HE_BENCH=clients,committee,threshold,dim (e.g. 100,5,3,199210)")
	}
	var cfg BenchConfig
	if _, err := fmt.Sscanf(spec, "%d,%d,%d,%d", &cfg.Clients, &cfg.Committee, &cfg.Threshold, &cfg.Dim); err != nil {
		t.Fatalf("HE_BENCH=%q: %v", spec, err)
	}
	cfg.Seed = 1
	rep, err := RunBench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := *rep
	out.Params = nil
	b, _ := json.MarshalIndent(out, "", "  ")
	t.Logf("%s", b)
	if !rep.Correct {
		t.Fatal("not correct")
	}
}
