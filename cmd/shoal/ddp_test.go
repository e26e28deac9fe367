package main

import (
	"math"
	"strings"
	"testing"
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
