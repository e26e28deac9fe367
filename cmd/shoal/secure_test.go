package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func simulateJSON(t *testing.T, args ...string) simSummary {
	t.Helper()
	code, stdout, stderr := shoal(t, append([]string{"simulate", "--json", "--out", t.TempDir()}, args...)...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	var s simSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, stdout)
	}
	return s
}

// Secure aggregation changes who sees what, not what is learnt: the same seed gives the same
// accuracy up to quantisation (with a clip range wide enough for this data's updates: entries
// beyond it are clipped), and the protocol survives clients dropping mid-round.
func TestSimulateSecureSumMatchesPlain(t *testing.T) {
	base := []string{"--dataset", "synthetic", "--model", "logreg", "--clients", "20", "--fraction", "0.5",
		"--rounds", "3", "--lr", "0.05", "--seed", "11", "--target-accuracy", "0"}
	plain := simulateJSON(t, base...)
	if len(plain.Protection) != 2 || !strings.Contains(plain.Protection[0], "sees every") {
		t.Fatalf("plain run's protection statement: %q", plain.Protection)
	}
	for _, proto := range []string{"secagg", "secaggplus"} {
		sec := simulateJSON(t, append(base, "--secure-sum", proto, "--secagg-clip-range", "4")...)
		if !strings.Contains(sec.Protection[0], "learns only the sum") {
			t.Fatalf("%s protection statement: %q", proto, sec.Protection)
		}
		if d := math.Abs(sec.FinalAccuracy - plain.FinalAccuracy); d > 0.01 {
			t.Fatalf("%s accuracy %.4f vs plain %.4f", proto, sec.FinalAccuracy, plain.FinalAccuracy)
		}
		lossy := simulateJSON(t, append(base, "--secure-sum", proto, "--stage-dropout", "0.2", "--max-dropout", "0.4",
			"--dropout-stage", "masked")...)
		dropped := 0
		for _, h := range lossy.History {
			if h.Participants+h.Dropped != 10 {
				t.Fatalf("%s: %+v", proto, h)
			}
			dropped += h.Dropped
		}
		if dropped == 0 {
			t.Fatalf("%s: stage dropout injected no dropout", proto)
		}
	}
}

// Threshold HE: the server decrypts only the aggregate, and learning is unchanged.
func TestSimulateHEMatchesPlain(t *testing.T) {
	base := []string{"--dataset", "synthetic", "--model", "logreg", "--clients", "12", "--fraction", "0.5",
		"--rounds", "2", "--lr", "0.05", "--seed", "11", "--target-accuracy", "0"}
	plain := simulateJSON(t, base...)
	sec := simulateJSON(t, append(base, "--secure-sum", "he", "--he-committee", "4", "--he-threshold", "3")...)
	if d := math.Abs(sec.FinalAccuracy - plain.FinalAccuracy); d > 0.005 {
		t.Fatalf("he accuracy %.4f vs plain %.4f", sec.FinalAccuracy, plain.FinalAccuracy)
	}
	for _, h := range sec.History {
		if h.Participants != 6 {
			t.Fatalf("he round %+v", h)
		}
	}
}

func TestSimulateSecureSumRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--secure-sum", "secagg", "--strategy", "fedmedian"}, "reveals only their sum"},
		{[]string{"--secure-sum", "magic"}, "valid: none, he, secagg, secaggplus"},
		{[]string{"--secure-sum", "he", "--clients", "3", "--he-committee", "5"}, "larger than the federation"},
		{[]string{"--secure-sum", "he", "--he-committee", "3", "--he-threshold", "4"}, "threshold"},
		{[]string{"--secure-sum", "he", "--strategy", "krum"}, "reveals only their sum"},
		{[]string{"--secure-sum", "secagg", "--dropout-stage", "lunch"}, "advertise, share, masked, unmask"},
		{[]string{"--stage-dropout", "0.1"}, "needs a --secure-sum"},
		{[]string{"--secure-sum", "secagg", "--secagg-bits", "40"}, "bits"},
		{[]string{"--secure-sum", "secaggplus", "--clients", "300", "--fraction", "1", "--secagg-degree", "6"}, "--secagg-degree 6"},
	} {
		code, _, stderr := shoal(t, append([]string{"simulate", "--dataset", "synthetic", "--out", t.TempDir()}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
}
