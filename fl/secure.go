package fl

import (
	"context"
	"errors"
)

// ErrRoundAbandoned marks a round that released nothing (too few survivors for a secure sum,
// for example); the engine leaves the global model unchanged and goes on.
var ErrRoundAbandoned = errors.New("round abandoned")

// ErrBudgetExhausted is returned by ServerPrivacy.CheckBudget when the next round would spend
// more privacy than allowed; the engine stops before it.
var ErrBudgetExhausted = errors.New("privacy budget exhausted")

// SumInput is one client's contribution to a secure sum, held on the client's side.
type SumInput struct {
	Client    ClientID
	Update    []float32 // the (clipped) model delta
	Weight    float64   // the client's aggregation weight
	Unclipped float64   // 1 if the update was not clipped, for adaptive clipping
}

// SumResult is all the server learns from a secure sum.
type SumResult struct {
	Sum       []float64 // Σ Weightᵢ·Updateᵢ over the clients whose inputs were unmasked
	Weight    float64   // Σ Weightᵢ
	Unclipped float64   // Σ Unclippedᵢ
	Count     int       // number of clients in the sum
}

// SecureSum is the seam where a secure-aggregation protocol (SecAgg, SecAgg+, threshold HE)
// replaces the plain sum: it runs the protocol among the cohort that finished training, with the
// protocol's own dropouts, and returns only the sum. An error wrapping ErrRoundAbandoned means
// nothing was released.
type SecureSum interface {
	Name() string
	// Describe states the protocol's parameters and threat model for the run report.
	Describe() string
	Sum(ctx context.Context, round int, dim int, inputs []SumInput) (SumResult, error)
}

// ServerPrivacy is the server half of a differential-privacy mechanism: it sets the clip norm
// the clients use, turns the cohort's sum into the (noised) mean the strategy sees, and accounts.
type ServerPrivacy interface {
	// Describe states the mechanism, its placement and parameters for the run report.
	Describe() string
	// CheckBudget returns an error wrapping ErrBudgetExhausted if running the round would take
	// the spent ε past the allowed maximum.
	CheckBudget(round int) error
	// ConfigureFit sets ClipNorm (and LocalNoiseStd) in the clients' configuration.
	ConfigureFit(round int, cfg FitConfig) FitConfig
	// Finalize turns the sum of count clipped updates (each weighted 1) into the mean estimate,
	// adding central noise, and updates adaptive clipping from the unclipped count.
	Finalize(round int, sum []float64, count int, unclipped float64) ([]float32, error)
	// Account records that round ran and returns the (ε, δ) spent so far.
	Account(round int) (epsilon, delta float64, err error)
}
