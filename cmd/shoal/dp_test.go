package main

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"shoal/privacy"
)

func TestSimulateDPReportsEpsilon(t *testing.T) {
	s := simulateJSON(t, "--dataset", "synthetic", "--model", "logreg", "--clients", "50", "--sampling", "poisson",
		"--fraction", "0.2", "--rounds", "4", "--seed", "5", "--target-accuracy", "0", "--dp", "central",
		"--noise-multiplier", "1.1", "--clip", "0.5", "--delta", "1e-5")
	if s.Epsilon == nil || s.Delta == nil || *s.Delta != 1e-5 {
		t.Fatalf("summary lacks (ε, δ): %+v", s)
	}
	ref, _ := privacy.NewAccountant("rdp")
	want, err := ref.EpsilonAfter(0.2, 1.1, 4, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	if *s.Epsilon != want {
		t.Fatalf("ε = %v, the accountant gives %v for 4 rounds", *s.Epsilon, want)
	}
	for i := 1; i < len(s.History); i++ {
		if s.History[i].Epsilon <= s.History[i-1].Epsilon {
			t.Fatalf("ε must grow every round: %+v", s.History)
		}
	}
	// The budget stops the run before the round that would pass it.
	capped := simulateJSON(t, "--dataset", "synthetic", "--model", "logreg", "--clients", "50", "--sampling", "poisson",
		"--fraction", "0.2", "--rounds", "50", "--seed", "5", "--target-accuracy", "0", "--dp", "central",
		"--noise-multiplier", "1.1", "--max-epsilon", strconv.FormatFloat(*s.Epsilon+1e-9, 'g', -1, 64))
	if capped.RoundsRun != 4 {
		t.Fatalf("with max ε = ε(4 rounds) the run did %d rounds", capped.RoundsRun)
	}
}

// Adaptive clipping moves the clip norm toward the target quantile of update norms: from a clip
// far below every norm it must grow every round (noise aside, with count noise 0.05·qN).
func TestSimulateAdaptiveClipGrows(t *testing.T) {
	s := simulateJSON(t, "--dataset", "synthetic", "--model", "logreg", "--clients", "200", "--sampling", "poisson",
		"--fraction", "0.5", "--rounds", "4", "--seed", "5", "--target-accuracy", "0", "--dp", "central",
		"--noise-multiplier", "1.0", "--clip", "0.0001", "--adaptive-clip", "0.5")
	for i := 1; i < len(s.History); i++ {
		if s.History[i].ClipNorm <= s.History[i-1].ClipNorm {
			t.Fatalf("clip norm did not grow from far below the median norm: %+v", s.History)
		}
	}
	if math.Abs(s.History[0].ClipNorm-0.0001) > 1e-9 {
		t.Fatalf("first round must use the initial clip: %+v", s.History[0])
	}
}

func TestSimulateDPRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dp", "central"}, "--sampling poisson"},
		{[]string{"--dp", "central", "--sampling", "poisson", "--noise-multiplier", "0"}, "noise multiplier"},
		{[]string{"--dp", "central", "--sampling", "poisson", "--noise-multiplier", "-1"}, "noise multiplier"},
		{[]string{"--dp", "central", "--sampling", "poisson", "--delta", "1"}, "δ"},
		{[]string{"--dp", "central", "--sampling", "poisson", "--fraction", "1.5"}, "(0, 1]"},
		{[]string{"--dp", "central", "--sampling", "poisson", "--accountant", "magic"}, "rdp or pld"},
		{[]string{"--dp", "sideways", "--sampling", "poisson"}, "off, central, local"},
		{[]string{"--max-epsilon", "3"}, "need --dp"},
		{[]string{"--dp", "central", "--sampling", "poisson", "--strategy", "krum"}, "DP-FedAvg"},
	} {
		code, _, stderr := shoal(t, append([]string{"simulate", "--dataset", "synthetic", "--out", t.TempDir()}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
}
