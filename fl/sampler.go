package fl

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Sampler picks the cohort of a round among the n registered clients.
type Sampler interface {
	Sample(round, n int, rng *rand.Rand) []ClientID
	// Describe says how clients are sampled, for the run report.
	Describe() string
}

// FractionSampler picks max(⌈C·n⌉, Min) clients uniformly without replacement (capped at n),
// as in McMahan et al. 2017.
type FractionSampler struct {
	Fraction float64
	Min      int
}

// NewFractionSampler validates C ∈ (0, 1] and Min ≥ 1.
func NewFractionSampler(fraction float64, minClients int) (*FractionSampler, error) {
	if !(fraction > 0 && fraction <= 1) {
		return nil, fmt.Errorf("client fraction must be in (0, 1], got %v", fraction)
	}
	if minClients < 1 {
		return nil, fmt.Errorf("minimum clients per round must be ≥ 1, got %d", minClients)
	}
	return &FractionSampler{Fraction: fraction, Min: minClients}, nil
}

// Size is the cohort size for n registered clients.
func (s *FractionSampler) Size(n int) int {
	m := max(int(math.Ceil(s.Fraction*float64(n)-1e-9)), s.Min)
	return min(m, n)
}

func (s *FractionSampler) Sample(_ int, n int, rng *rand.Rand) []ClientID {
	m := s.Size(n)
	// Partial Fisher–Yates over a sparse map keeps this O(m) even for many registered clients.
	swapped := make(map[int]int, 2*m)
	at := func(i int) int {
		if v, ok := swapped[i]; ok {
			return v
		}
		return i
	}
	out := make([]ClientID, m)
	for i := range m {
		k := i + rng.IntN(n-i)
		vi, vk := at(i), at(k)
		swapped[k] = vi
		out[i] = ClientID(vk)
	}
	return out
}

func (s *FractionSampler) Describe() string {
	return fmt.Sprintf("uniform without replacement, fraction %g, at least %d", s.Fraction, s.Min)
}

// PoissonSampler includes each client independently with probability Q: the sampling the
// privacy accountant's amplification assumes. A round's cohort may be empty.
type PoissonSampler struct{ Q float64 }

// NewPoissonSampler validates q ∈ (0, 1].
func NewPoissonSampler(q float64) (*PoissonSampler, error) {
	if !(q > 0 && q <= 1) {
		return nil, fmt.Errorf("Poisson sampling rate must be in (0, 1], got %v", q)
	}
	return &PoissonSampler{Q: q}, nil
}

func (s *PoissonSampler) Sample(_ int, n int, rng *rand.Rand) []ClientID {
	out := make([]ClientID, 0, int(s.Q*float64(n))+8)
	for i := range n {
		if rng.Float64() < s.Q {
			out = append(out, ClientID(i))
		}
	}
	return out
}

func (s *PoissonSampler) Describe() string {
	return fmt.Sprintf("Poisson, each client independently with probability %g", s.Q)
}
