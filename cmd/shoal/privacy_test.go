package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"shoal/privacy"
)

func runPrivacyCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPrivacyEpsilonReferencePoints(t *testing.T) {
	for _, tc := range []struct {
		z, want  float64
		extra    []string
		tol      float64
		wantConv string
	}{
		{1.1, 2.60, nil, 0.01, "improved"},
		{1.1, 3.01, []string{"--conversion", "classic"}, 0.01, "classic"},
		{1.12, 2.52, nil, 0.01, "improved"},
	} {
		args := append([]string{"privacy", "epsilon", "--sampling-rate", "0.004266666666666667", "--noise-multiplier", jsonNum(tc.z),
			"--steps", "14063", "--delta", "1e-5", "--json"}, tc.extra...)
		code, out, errs := runPrivacyCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		var got privacyEpsilonJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if math.Abs(got.Epsilon-tc.want) > tc.tol || got.Conversion != tc.wantConv || got.Order == nil || *got.Order <= 1 {
			t.Errorf("z = %v %v: got %+v, want ε ≈ %v", tc.z, tc.extra, got, tc.want)
		}
	}
}

func jsonNum(f float64) string { b, _ := json.Marshal(f); return string(b) }

func TestPrivacyEpsilonPLDTighter(t *testing.T) {
	base := []string{"privacy", "epsilon", "--sampling-rate", "0.01", "--noise-multiplier", "1", "--steps", "10", "--delta", "1e-5", "--json"}
	_, rdpOut, _ := runPrivacyCLI(t, base...)
	code, pldOut, errs := runPrivacyCLI(t, append(base, "--accountant", "pld")...)
	if code != 0 {
		t.Fatalf("pld: exit %d: %s", code, errs)
	}
	var r, p privacyEpsilonJSON
	if err := json.Unmarshal([]byte(rdpOut), &r); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(pldOut), &p); err != nil {
		t.Fatal(err)
	}
	if !(p.Epsilon > 0 && p.Epsilon < 0.5*r.Epsilon) || p.Accountant != "pld" {
		t.Errorf("10 steps: PLD ε = %v, RDP ε = %v: PLD should be far tighter", p.Epsilon, r.Epsilon)
	}
	// Human-readable output mentions ε.
	code, text, _ := runPrivacyCLI(t, base[:len(base)-1]...)
	if code != 0 || !strings.HasPrefix(text, "ε = ") {
		t.Errorf("text output: exit %d, %q", code, text)
	}
}

func TestPrivacyNoiseCalibrates(t *testing.T) {
	code, out, errs := runPrivacyCLI(t, "privacy", "noise", "--target-epsilon", "2.5967", "--sampling-rate", "0.004266666666666667",
		"--steps", "14063", "--delta", "1e-5", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got privacyNoiseJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	// ε(1.1) = 2.5966 (RDP, improved): the smallest z meeting 2.5967 is just below 1.1.
	if math.Abs(got.NoiseMultiplier-1.1) > 0.002 || got.Epsilon > 2.5967 {
		t.Errorf("got %+v, want z ≈ 1.1 with ε ≤ 2.5967", got)
	}
	// A slightly smaller z overshoots the target: the answer is the smallest.
	code, out, _ = runPrivacyCLI(t, "privacy", "epsilon", "--sampling-rate", "0.004266666666666667", "--noise-multiplier",
		jsonNum(got.NoiseMultiplier*0.999), "--steps", "14063", "--delta", "1e-5", "--json")
	var e privacyEpsilonJSON
	if code != 0 || json.Unmarshal([]byte(out), &e) != nil || e.Epsilon <= 2.5967 {
		t.Errorf("z·0.999 gives ε = %v (exit %d): calibration is not tight", e.Epsilon, code)
	}
}

func TestPrivacyBadInput(t *testing.T) {
	ok := []string{"--sampling-rate", "0.01", "--steps", "100", "--delta", "1e-5"}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{append([]string{"privacy", "epsilon", "--noise-multiplier", "0"}, ok...), 2},
		{append([]string{"privacy", "epsilon", "--noise-multiplier", "-1"}, ok...), 2},
		{append([]string{"privacy", "epsilon", "--noise-multiplier", "NaN"}, ok...), 2},
		{append([]string{"privacy", "epsilon"}, ok...), 2}, // z missing
		{[]string{"privacy", "epsilon", "--noise-multiplier", "1", "--sampling-rate", "1.5", "--steps", "1", "--delta", "1e-5"}, 2},
		{[]string{"privacy", "epsilon", "--noise-multiplier", "1", "--sampling-rate", "0", "--steps", "1", "--delta", "1e-5"}, 2},
		{[]string{"privacy", "epsilon", "--noise-multiplier", "1", "--sampling-rate", "0.1", "--steps", "0", "--delta", "1e-5"}, 2},
		{[]string{"privacy", "epsilon", "--noise-multiplier", "1", "--sampling-rate", "0.1", "--steps", "1", "--delta", "1"}, 2},
		{[]string{"privacy", "epsilon", "--noise-multiplier", "1", "--sampling-rate", "0.1", "--steps", "1", "--delta", "Inf"}, 2},
		{append([]string{"privacy", "epsilon", "--noise-multiplier", "1", "--accountant", "zcdp"}, ok...), 2},
		{append([]string{"privacy", "epsilon", "--noise-multiplier", "1", "--bogus"}, ok...), 2},
		{append([]string{"privacy", "noise", "--target-epsilon", "-3"}, ok...), 2},
		{append([]string{"privacy", "noise"}, ok...), 2},
		{append([]string{"privacy", "noise", "--target-epsilon", "1e-9"}, ok...), 1}, // unreachable
	} {
		code, _, errs := runPrivacyCLI(t, tc.args...)
		if code != tc.code || errs == "" {
			t.Errorf("%v: exit %d (stderr %q), want %d with a message", tc.args, code, errs, tc.code)
		}
	}
}

func privacyEpsilonOf(t *testing.T, args ...string) privacyEpsilonJSON {
	t.Helper()
	code, out, errs := runPrivacyCLI(t, append(append([]string{"privacy", "epsilon"}, args...), "--json")...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errs)
	}
	var got privacyEpsilonJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	return got
}

// At q = 1 and many bits the distributed mechanisms' ε falls to the Gaussian's at the same z
// (the discretisation terms vanish; what remains is the integer grid of orders).
func TestPrivacyEpsilonDistributedApproachesGaussian(t *testing.T) {
	base := []string{"--sampling-rate", "1", "--noise-multiplier", "3", "--steps", "20", "--delta", "1e-5"}
	g := privacyEpsilonOf(t, base...)
	if g.Mechanism != "gaussian" || g.DDP != nil {
		t.Fatalf("gaussian: %+v", g)
	}
	for _, m := range []string{"skellam", "ddgauss"} {
		var prev float64
		for _, b := range []string{"5", "12", "20"} {
			d := privacyEpsilonOf(t, append(base, "--mechanism", m, "--bits", b, "--dim", "100", "--clients-per-round", "10")...)
			a := d.DDP
			if a == nil || a.Mechanism != m || a.PaddedDim != 128 || a.Shares != 10 || !(a.Gamma > 0) || !(a.L1 >= a.L2) || d.Order == nil {
				t.Fatalf("%s b = %s: audit %+v", m, b, d)
			}
			// The audit is self-consistent: the summed noise is z·Δ2 in the sum's units.
			var sumStd float64
			if m == "skellam" {
				if a.SkellamMu == nil || a.DDGaussSigma != nil {
					t.Fatalf("skellam audit %+v", a)
				}
				sumStd = math.Sqrt(2 * *a.SkellamMu)
			} else {
				if a.DDGaussSigma == nil || a.Tau == nil || a.SkellamMu != nil {
					t.Fatalf("ddgauss audit %+v", a)
				}
				sumStd = *a.DDGaussSigma
			}
			if math.Abs(sumStd/a.L2-3) > 1e-9 {
				t.Errorf("%s b = %s: summed noise %v = %v·Δ2, want 3·Δ2", m, b, sumStd, sumStd/a.L2)
			}
			if prev != 0 && d.Epsilon > prev*(1+1e-12) {
				t.Errorf("%s: ε grew with the bits: %v after %v", m, d.Epsilon, prev)
			}
			prev = d.Epsilon
			if !(d.Epsilon >= g.Epsilon*0.999) {
				t.Errorf("%s b = %s: ε = %v below the Gaussian's %v", m, b, d.Epsilon, g.Epsilon)
			}
			if b == "20" && !(d.Epsilon <= g.Epsilon*1.03) {
				t.Errorf("%s b = 20: ε = %v, Gaussian %v: want within 3 %% above", m, d.Epsilon, g.Epsilon)
			}
			// Skellam's bound pays for a small Δ2 (few bits, small model): 5 bits, Δ2 ≈ 6.
			if m == "skellam" && b == "5" && !(d.Epsilon > g.Epsilon*1.001) {
				t.Errorf("skellam b = 5: ε = %v should exceed the Gaussian's %v (Δ2 = %v)", d.Epsilon, g.Epsilon, a.L2)
			}
		}
	}
}

func TestPrivacyNoiseDistributedRoundTrip(t *testing.T) {
	for _, m := range []string{"skellam", "ddgauss"} {
		common := []string{"--sampling-rate", "0.1", "--steps", "50", "--delta", "1e-5", "--mechanism", m, "--bits", "14",
			"--dim", "5000", "--clients-per-round", "50", "--min-clients", "40"}
		code, out, errs := runPrivacyCLI(t, append(append([]string{"privacy", "noise", "--target-epsilon", "2"}, common...), "--json")...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", m, code, errs)
		}
		var n privacyNoiseJSON
		if err := json.Unmarshal([]byte(out), &n); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if n.Mechanism != m || n.DDP == nil || n.DDP.Shares != 40 || !(n.Epsilon <= 2 && n.Epsilon > 1.99) {
			t.Fatalf("%s: %+v", m, n)
		}
		// privacy epsilon at the calibrated z spends the same ε; 0.1 % less noise spends more.
		e := privacyEpsilonOf(t, append(common, "--noise-multiplier", jsonNum(n.NoiseMultiplier))...)
		if math.Abs(e.Epsilon-n.Epsilon) > 1e-9 || !reflect.DeepEqual(e.DDP, n.DDP) {
			t.Errorf("%s: epsilon at z = %v: %v (%+v), noise said %v (%+v)", m, n.NoiseMultiplier, e.Epsilon, e.DDP, n.Epsilon, n.DDP)
		}
		if e := privacyEpsilonOf(t, append(common, "--noise-multiplier", jsonNum(n.NoiseMultiplier*0.999))...); !(e.Epsilon > 2) {
			t.Errorf("%s: z = %v·0.999 spends ε = %v ≤ the target: the calibration is not the smallest", m, n.NoiseMultiplier, e.Epsilon)
		}
	}
}

func TestPrivacyDistributedBadFlags(t *testing.T) {
	ok := []string{"privacy", "epsilon", "--noise-multiplier", "1", "--sampling-rate", "0.01", "--steps", "10", "--delta", "1e-5"}
	dd := append(append([]string{}, ok...), "--dim", "1000", "--clients-per-round", "50")
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{append(append([]string{}, dd...), "--mechanism", "laplace"), "--mechanism"},
		{append(append([]string{}, ok...), "--mechanism", "skellam", "--clients-per-round", "50"), "--dim"},
		{append(append([]string{}, ok...), "--mechanism", "skellam", "--dim", "1000"), "--clients-per-round"},
		{append(append([]string{}, dd...), "--mechanism", "skellam", "--bits", "30"), "--bits"},
		{append(append([]string{}, dd...), "--mechanism", "ddgauss", "--bits", "3"), "--bits"},
		{append(append([]string{}, dd...), "--mechanism", "skellam", "--clip", "0"), "--clip"},
		{append(append([]string{}, dd...), "--mechanism", "skellam", "--modclip-prob", "1"), "--modclip-prob"},
		{append(append([]string{}, dd...), "--mechanism", "skellam", "--min-clients", "60"), "--min-clients"},
		{append(append([]string{}, dd...), "--mechanism", "skellam", "--accountant", "pld"), "--accountant"},
		{append(append([]string{}, dd...), "--mechanism", "ddgauss", "--bits", "8", "--noise-multiplier", "0.05", "--dim", "1", "--clients-per-round", "10"), "--mechanism ddgauss"}, // share σ < 1/2
		{[]string{"privacy", "noise", "--target-epsilon", "1", "--sampling-rate", "0.01", "--steps", "10", "--delta", "1e-5", "--mechanism", "skellam", "--dim", "-1", "--clients-per-round", "5"}, "--dim"},
	} {
		code, _, errs := runPrivacyCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.flag) {
			t.Errorf("%v: exit %d, stderr %q: want 2 naming %s", tc.args, code, errs, tc.flag)
		}
	}
}

// The small-noise bug: "RDP at order 1.001 is NaN" at z = 0.05 and 0.1 (q = 0.25, one step).
func TestPrivacyEpsilonSmallNoise(t *testing.T) {
	prev := math.Inf(1)
	for _, z := range []string{"0.05", "0.1"} {
		e := privacyEpsilonOf(t, "--sampling-rate", "0.25", "--noise-multiplier", z, "--steps", "1", "--delta", "1e-5")
		if !(e.Epsilon > 0 && e.Epsilon < prev) || e.Order == nil {
			t.Errorf("z = %s: %+v (previous ε %v)", z, e, prev)
		}
		prev = e.Epsilon
	}
}

// The adaptive clip's count under distributed DP: `privacy epsilon --count-stddev` spends what
// the engine's accountant spends composing the update and the count round by round, more than
// the update alone, and approaches it as the count noise grows.
func TestPrivacyEpsilonDistributedCount(t *testing.T) {
	for _, m := range []string{"skellam", "ddgauss"} {
		common := []string{"--sampling-rate", "0.1", "--steps", "30", "--delta", "1e-5", "--mechanism", m, "--bits", "16",
			"--dim", "5000", "--clients-per-round", "100", "--min-clients", "80", "--noise-multiplier", "1.5"}
		alone := privacyEpsilonOf(t, common...)
		withCount := privacyEpsilonOf(t, append(common, "--count-stddev", "5")...)
		loose := privacyEpsilonOf(t, append(common, "--count-stddev", "500")...)
		if want := 4 * 5.0 * 5.0 / 80; withCount.DDP == nil || math.Abs(withCount.DDP.CountShare-want) > 1e-12 || withCount.DDP.CountStddev != 5 {
			t.Fatalf("%s: count share %+v, want %v", m, withCount.DDP, want)
		}
		if !(withCount.Epsilon > alone.Epsilon*1.01) || !(loose.Epsilon >= alone.Epsilon && loose.Epsilon < alone.Epsilon*1.0001) {
			t.Errorf("%s: ε alone %v, with count σ_b = 5 %v, with σ_b = 500 %v", m, alone.Epsilon, withCount.Epsilon, loose.Epsilon)
		}
		// The engine's way: one subsampled step per round with the shares summed.
		c := privacy.DDPConfig{Mechanism: m, Bits: 16, Clip: 1, NoiseMultiplier: 1.5, MinClients: 80, Cohort: 100,
			ModClipProb: privacy.DefaultModClipProb, CountStddev: 5}
		p, err := c.Params(5000)
		if err != nil {
			t.Fatal(err)
		}
		acc := privacy.NewRDPAccountant(privacy.ConversionImproved)
		for range 30 {
			if err := acc.ComposeEvent(privacy.DiscreteStep(p.Event(80), 0.1, 1)); err != nil {
				t.Fatal(err)
			}
		}
		eps, err := acc.Epsilon(1e-5)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(eps-withCount.Epsilon) > 1e-9*eps {
			t.Errorf("%s: engine's accountant %v, privacy epsilon %v", m, eps, withCount.Epsilon)
		}
	}
	code, _, errs := runPrivacyCLI(t, "privacy", "epsilon", "--noise-multiplier", "1", "--sampling-rate", "0.01", "--steps", "10",
		"--delta", "1e-5", "--count-stddev", "5")
	if code != 2 || !strings.Contains(errs, "--count-stddev") {
		t.Errorf("--count-stddev under central DP: exit %d, %q", code, errs)
	}
}
