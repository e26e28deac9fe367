package main

import (
	"math"
	"strings"
	"testing"

	"shoal/securesum"
)

// TestSimulateDistributedDPLearns: a small synthetic run under distributed DP learns (its
// test loss falls from round 1, to within 5% of central DP's at the same noise), reports a
// growing ε, and states in its protection that the server never sees an un-noised sum, with the
// mechanism, b and γ. (The noise is small: DP-FedAvg's fixed denominator learns this task slowly
// at any noise; the test is that the distributed pipeline decodes the right sum.)
func TestSimulateDistributedDPLearns(t *testing.T) {
	args := []string{"--dataset", "synthetic", "--model", "logreg", "--clients", "400", "--sampling", "poisson",
		"--fraction", "0.25", "--rounds", "8", "--seed", "7", "--target-accuracy", "0", "--secure-sum", "secaggplus",
		"--secagg-bits", "16", "--noise-multiplier", "0.2", "--clip", "5"}
	central := simulateJSON(t, append(args, "--dp", "central")...)
	for _, mech := range []string{"skellam", "ddgauss"} {
		s := simulateJSON(t, append(args, "--dp", "distributed", "--mechanism", mech)...)
		if s.Epsilon == nil || *s.Epsilon <= 0 {
			t.Fatalf("%s: no ε reported: %+v", mech, s)
		}
		for i := 1; i < len(s.History); i++ {
			if s.History[i].Epsilon <= s.History[i-1].Epsilon {
				t.Fatalf("%s: ε must grow every round: %+v", mech, s.History)
			}
		}
		if s.FinalLoss >= s.History[0].Loss || s.FinalLoss > central.FinalLoss*1.05 {
			t.Fatalf("%s: loss %v after round 1, %v at the end (central DP: %v): the run did not learn",
				mech, s.History[0].Loss, s.FinalLoss, central.FinalLoss)
		}
		all := strings.Join(s.Protection, "\n")
		for _, want := range []string{"never sees an un-noised sum", "distributed DP (" + mech + ")", "Z_2^16", "γ = "} {
			if !strings.Contains(all, want) {
				t.Fatalf("%s: protection lacks %q:\n%s", mech, want, all)
			}
		}
		t.Logf("%s: loss %.3f → %.3f (central %.3f) ε %.3f", mech, s.History[0].Loss, s.FinalLoss, central.FinalLoss, *s.Epsilon)
		// The simulation fast path releases a sum of the same law: the same ε, a loss as close to
		// SecAgg's as two noise draws allow, and a summary that says it is a simulation.
		f := simulateJSON(t, append(args, "--dp", "distributed", "--mechanism", mech, "--ddp-simulated-sum")...)
		if f.Epsilon == nil || math.Abs(*f.Epsilon-*s.Epsilon) > 1e-9 || math.Abs(f.FinalLoss-s.FinalLoss) > 0.05*s.FinalLoss {
			t.Fatalf("%s: simulated sum: ε %v loss %v; SecAgg: ε %v loss %v", mech, f.Epsilon, f.FinalLoss, *s.Epsilon, s.FinalLoss)
		}
		if all := strings.Join(f.Protection, "\n"); !strings.Contains(all, "SIMULATION") || !strings.Contains(all, "no secure aggregation") {
			t.Fatalf("%s: the simulated sum's summary does not say so:\n%s", mech, all)
		}
	}
}

func TestSimulateDistributedDPRefusals(t *testing.T) {
	base := []string{"simulate", "--dataset", "synthetic", "--model", "logreg", "--clients", "50", "--sampling", "poisson",
		"--fraction", "0.5", "--rounds", "1", "--dp", "distributed", "--out", t.TempDir()}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "needs --secure-sum secagg or secaggplus"},
		{[]string{"--secure-sum", "he"}, "threshold CKKS"},
		{[]string{"--secure-sum", "secagg", "--mechanism", "laplace"}, "--mechanism"},
		{[]string{"--secure-sum", "secagg", "--secagg-bits", "24"}, "bits"},
		{[]string{"--secure-sum", "secagg", "--accountant", "pld"}, "rdp"},
		{[]string{"--secure-sum", "secagg", "--ddp-simulated-sum", "--stage-dropout", "0.1"}, "no protocol stages"},
		{[]string{"--secure-sum", "secagg", "--ddp-simulated-sum", "--dp", "central"}, "--ddp-simulated-sum needs --dp distributed"},
	} {
		code, _, stderr := shoal(t, append(append([]string{}, base...), tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestSimulateDistributedDPAdaptiveClip: under distributed DP, --adaptive-clip moves the clip
// from the noised count the secure sum releases. From a clip far above every update norm (all
// unclipped) it falls round after round toward the median; the count costs a little ε (it is
// accounted with the update); the summary says so. Both over SecAgg+ and the simulated sum.
func TestSimulateDistributedDPAdaptiveClip(t *testing.T) {
	args := []string{"--dataset", "synthetic", "--model", "logreg", "--clients", "400", "--sampling", "poisson",
		"--fraction", "0.25", "--rounds", "6", "--seed", "3", "--target-accuracy", "0", "--secure-sum", "secaggplus",
		"--secagg-bits", "16", "--noise-multiplier", "0.5", "--clip", "50", "--dp", "distributed"}
	fixed := simulateJSON(t, args...)
	for _, extra := range [][]string{{"--mechanism", "skellam"}, {"--mechanism", "ddgauss"}, {"--mechanism", "skellam", "--ddp-simulated-sum"}} {
		s := simulateJSON(t, append(append(args, "--adaptive-clip", "0.5"), extra...)...)
		if len(s.History) != 6 || s.History[0].ClipNorm != 50 {
			t.Fatalf("%v: history %+v", extra, s.History)
		}
		for i := 1; i < len(s.History); i++ {
			if c, prev := s.History[i].ClipNorm, s.History[i-1].ClipNorm; !(c < prev*0.97 && c > prev*0.8) {
				t.Fatalf("%v: clip %v after %v: with every update unclipped it must fall by about e^{−0.2·½} per round", extra, c, prev)
			}
		}
		if *s.Epsilon <= *fixed.Epsilon || *s.Epsilon > *fixed.Epsilon*1.05 {
			t.Fatalf("%v: ε %v with the count, %v without: the count must cost a little", extra, *s.Epsilon, *fixed.Epsilon)
		}
		if all := strings.Join(s.Protection, "\n"); !strings.Contains(all, "server sees only the noised count") {
			t.Fatalf("%v: summary:\n%s", extra, all)
		}
	}
}

// TestAttackDDPSimulatedSumOutsideSimulate: --ddp-simulated-sum releases a sum without masking
// (the server sees every quantised update). `shoal server` (and so the coordinator) shared
// simulate's flags and accepted it silently; it is refused now, `shoal client` has no such flag,
// and no announced secure-sum name builds the simulation (it is not in the registry).
func TestAttackDDPSimulatedSumOutsideSimulate(t *testing.T) {
	code, _, stderr := shoal(t, "server", "--insecure", "--listen", "127.0.0.1:0", "--wait-timeout", "1s", "--dataset", "synthetic",
		"--sampling", "poisson", "--fraction", "0.5", "--clients", "20", "--secure-sum", "secagg", "--dp", "distributed", "--ddp-simulated-sum")
	if code != 2 || !strings.Contains(stderr, "--ddp-simulated-sum") {
		t.Fatalf("shoal server --ddp-simulated-sum: exit %d, %s", code, stderr)
	}
	if code, _, stderr := shoal(t, "client", "--insecure", "--ddp-simulated-sum"); code != 2 {
		t.Fatalf("shoal client --ddp-simulated-sum: exit %d, %s", code, stderr)
	}
	for _, name := range securesum.Names() {
		if strings.Contains(name, "simulat") {
			t.Fatalf("the secure-sum registry offers %q to the wire", name)
		}
	}
	if _, err := securesum.FromWire("secagg-ddp-simulated", []byte(`{}`)); err == nil {
		t.Fatal("the simulated sum built from the wire")
	}
}
