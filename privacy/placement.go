package privacy

import (
	"fmt"
	"math"
)

// Placements: where the Gaussian noise is added, and what each protects against.
//
// Central (DP-FedAvg, McMahan et al. 2018). Every client clips its update to norm S; the server
// (or the secure-sum protocol, which gives the server nothing but the sum) forms the sum of
// the cohort's clipped updates, and the server adds N(0, (zS)²) to that sum before dividing by
// the expected cohort size qN (the fixed-denominator estimator, whose sensitivity does not
// depend on how many clients the Poisson sampling happened to pick). Protects every client's
// whole dataset (client-level DP) against anyone who sees the model after aggregation:
// other clients, the public, a later attacker with the checkpoints. It does not protect against
// the server itself unless the sum is computed by secure aggregation (then the server sees only
// the sum, and adds the noise to it; the noise must then be trusted to be added honestly).
// Accounting: Poisson-subsampled Gaussian with rate q and noise multiplier z per round.
//
// Local. Every client clips its update to S and adds N(0, (2zS)²) before it leaves the device.
// Protects each client against everyone, the server included, with no trust in anyone; costs
// √(cohort size) × more noise in the mean than central for the same z. The guarantee is per
// client under replacement of its data (two clipped updates differ by at most 2S, hence the 2):
// per round it took part in, a Gaussian mechanism of noise multiplier z, not amplified by
// sampling since the server knows who sent what. Account it with Compose(1, z, rounds taken).

// CentralNoisyMean turns sum = Σ_i w_i Δ_i, the weighted sum of the cohort's updates, each
// clipped to L2 norm clip and weighted by w_i ∈ [0, 1], into the DP-FedAvg estimate of the mean
// update: dst = (sum + N(0, (z·clip)²)) / expectedClients. It returns the standard deviation of
// the noise in dst per coordinate (≈ z·clip/expectedClients, slightly more: see GaussianNoise).
func CentralNoisyMean(dst []float32, sum []float64, clip, noiseMultiplier, expectedClients float64, src *Source) (float64, error) {
	if err := checkPositiveFinite("clip", clip); err != nil {
		return 0, err
	}
	if err := checkPositiveFinite("noise multiplier", noiseMultiplier); err != nil {
		return 0, err
	}
	if err := checkPositiveFinite("expected clients per round", expectedClients); err != nil {
		return 0, err
	}
	g, err := NewGaussianNoise(noiseMultiplier*clip, clip, len(sum))
	if err != nil {
		return 0, fmt.Errorf("privacy: central noise: %w", err)
	}
	if err := g.AddScaled64(dst, sum, 1/expectedClients, src); err != nil {
		return 0, fmt.Errorf("privacy: central noise: %w", err)
	}
	return g.Sigma() / expectedClients, nil
}

// LocalNoise clips a client's update to clip in place and adds N(0, (2·z·clip)²) noise to it,
// the local placement. It returns the pre-clip norm (for adaptive clipping) and the standard
// deviation of the noise added.
func LocalNoise(update []float32, clip, noiseMultiplier float64, src *Source) (norm, sigma float64, err error) {
	if err := checkPositiveFinite("noise multiplier", noiseMultiplier); err != nil {
		return 0, 0, err
	}
	norm, err = ClipL2(update, clip)
	if err != nil {
		return norm, 0, fmt.Errorf("privacy: local noise: %w", err)
	}
	g, err := NewGaussianNoise(2*noiseMultiplier*clip, 2*clip, len(update))
	if err != nil {
		return norm, 0, fmt.Errorf("privacy: local noise: %w", err)
	}
	if err := g.Add32(update, update, src); err != nil {
		return norm, 0, fmt.Errorf("privacy: local noise: %w", err)
	}
	return norm, g.Sigma(), nil
}

// Placement names the noise placements for configuration and reports.
type Placement string

const (
	PlacementOff     Placement = "off"
	PlacementCentral Placement = "central"
	PlacementLocal   Placement = "local"
)

// ParsePlacement accepts "off", "central" or "local".
func ParsePlacement(s string) (Placement, error) {
	switch p := Placement(s); p {
	case PlacementOff, PlacementCentral, PlacementLocal:
		return p, nil
	}
	return "", fmt.Errorf("privacy: unknown DP placement %q (want off, central or local)", s)
}

// ExpectedClients is the fixed denominator qN of the central estimator.
func ExpectedClients(samplingRate float64, population int) (float64, error) {
	if err := checkSampling(samplingRate, 1); err != nil {
		return 0, err
	}
	if population <= 0 {
		return 0, fmt.Errorf("privacy: population must be > 0, got %d", population)
	}
	n := samplingRate * float64(population)
	if math.IsInf(n, 0) || n <= 0 {
		return 0, fmt.Errorf("privacy: expected clients %v out of range", n)
	}
	return n, nil
}
