package main

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"shoal/data"
	"shoal/fl"
)

// dpOptions is a DP simulation of 1,000 synthetic clients, as parsed from the command line.
func dpOptions(t *testing.T, args ...string) simOptions {
	t.Helper()
	var o simOptions
	base := []string{"--dataset", "synthetic", "--model", "logreg", "--clients", "1000", "--dp", "central",
		"--sampling", "poisson", "--fraction", "0.5"}
	if err := parseWithConfig(simulateFlags(&o, io.Discard), append(base, args...)); err != nil {
		t.Fatal(err)
	}
	o.drawSeed()
	return o
}

func testPlan(t *testing.T, o simOptions) *runPlan {
	t.Helper()
	fed, err := data.Synthetic(1, 1, 20, 3) // the model's shape only
	if err != nil {
		t.Fatal(err)
	}
	plan, err := buildPlan(o, fed, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// Attack: the run summary reports the seed; on the old code the Poisson cohorts were drawn from
// it even when it was drawn at random, so anyone with the report rebuilt who took part in each
// round (the accountant assumes they cannot: ε 3.03 reported, 13.8 real for a client known to
// be in every round). Now a DP run without --seed draws its cohorts from a CSPRNG-keyed stream.
func TestAttackReportedSeedRevealsCohorts(t *testing.T) {
	o := dpOptions(t) // no --seed: a seed is drawn and reported
	plan := testPlan(t, o)
	actual := plan.engine.Sampler.Sample(1, o.Clients, rand.New(plan.engine.Source))
	rebuilt := plan.engine.Sampler.Sample(1, o.Clients, rand.New(rand.NewPCG(o.Seed, 0xc0407)))
	if slices.Equal(actual, rebuilt) {
		t.Fatalf("the cohort of round 1 (%d clients) follows from the reported seed %d", len(actual), o.Seed)
	}
	for _, p := range protection(plan.engine, o) {
		if strings.Contains(p, "OS CSPRNG") {
			return
		}
	}
	t.Fatalf("protection statement does not say where cohorts and noise come from: %q", protection(plan.engine, o))
}

// A simulation given --seed is a reproducible experiment, and its summary says it is not private.
func TestSeededSimulationSaysItIsNotPrivate(t *testing.T) {
	o := dpOptions(t, "--seed", "5")
	plan := testPlan(t, o)
	a := plan.engine.Sampler.Sample(1, o.Clients, rand.New(plan.engine.Source))
	b := plan.engine.Sampler.Sample(1, o.Clients, rand.New(rand.NewPCG(5, 0xc0407)))
	if !slices.Equal(a, b) {
		t.Fatal("--seed no longer reproduces the simulation's cohorts")
	}
	if got := strings.Join(protection(plan.engine, o), " | "); !strings.Contains(got, "seeded: reproducible experiment, not private") {
		t.Fatalf("protection statement of a seeded DP simulation: %q", got)
	}
}

// Attack: `shoal server --seed S` seeded the central DP noise, so subtracting the recomputed
// noise recovered the true sum. A deployment's noise never follows from a seed: two servers
// built from the same flags (seed included) add different noise to the same sum.
func TestAttackSeededServerNoise(t *testing.T) {
	noised := func() []float32 {
		o := dpOptions(t, "--seed", "5")
		o.deployment = true // what shoal server sets; --seed with --dp is refused on its command line
		plan := testPlan(t, o)
		plan.engine.Privacy.ConfigureFit(1, fl.FitConfig{})
		mean, err := plan.engine.Privacy.Finalize(1, make([]float64, 50), 10, 5)
		if err != nil {
			t.Fatal(err)
		}
		return mean
	}
	if a, b := noised(), noised(); slices.Equal(a, b) {
		t.Fatal("a deployment's DP noise is reproducible from its flags")
	}
}
