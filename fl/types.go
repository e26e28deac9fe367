package fl

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// ClientID identifies a client within a federation.
type ClientID int

// FitConfig is the local-training configuration the server sends with each fit task.
type FitConfig struct {
	Epochs      int     `json:"epochs"`
	BatchSize   int     `json:"batch_size"`
	LR          float32 `json:"lr"`
	Momentum    float32 `json:"momentum"`
	WeightDecay float32 `json:"weight_decay"`
	// ProxMu is FedProx's proximal coefficient μ (0 for plain local SGD).
	ProxMu float32 `json:"prox_mu"`
	// ClipNorm, when > 0, is the L2 norm S every client clips its update to (differential
	// privacy; the server may change it every round under adaptive clipping).
	ClipNorm float32 `json:"clip_norm,omitempty"`
	// PerLayerClip splits ClipNorm across layers in proportion to their sizes' square roots.
	PerLayerClip bool `json:"per_layer_clip,omitempty"`
	// LocalNoiseStd, when > 0, is the standard deviation of the Gaussian noise each client adds
	// to its clipped update (local differential privacy: 2·z·ClipNorm, for the replace-one
	// sensitivity 2·ClipNorm).
	LocalNoiseStd float32 `json:"local_noise_std,omitempty"`
	// UnitWeights gives every client weight 1 instead of its example count (user-level DP).
	UnitWeights bool `json:"unit_weights,omitempty"`
}

// Weight is a client's aggregation weight for a round in which it trained on numExamples
// examples: the count itself (FedAvg), or 1 under UnitWeights (user-level DP, where every
// client's contribution must be bounded by the clip alone). The engine, the simulator and the
// network client all weigh through this one rule.
func (c FitConfig) Weight(numExamples int) float64 {
	if c.UnitWeights {
		return 1
	}
	return float64(numExamples)
}

// Validate reports a configuration local training cannot run with.
func (c FitConfig) Validate() error {
	switch {
	case c.Epochs < 1:
		return fmt.Errorf("local epochs must be ≥ 1, got %d", c.Epochs)
	case c.BatchSize < 1:
		return fmt.Errorf("batch size must be ≥ 1, got %d", c.BatchSize)
	case !(c.LR > 0) || math.IsInf(float64(c.LR), 0):
		return fmt.Errorf("learning rate must be a positive finite number, got %v", c.LR)
	case c.Momentum < 0 || c.Momentum >= 1:
		return fmt.Errorf("momentum must be in [0, 1), got %v", c.Momentum)
	case c.WeightDecay < 0:
		return fmt.Errorf("weight decay must be ≥ 0, got %v", c.WeightDecay)
	case c.ProxMu < 0:
		return fmt.Errorf("FedProx μ must be ≥ 0, got %v", c.ProxMu)
	case c.ClipNorm < 0 || c.LocalNoiseStd < 0:
		return fmt.Errorf("clip norm and local noise must be ≥ 0, got %v and %v", c.ClipNorm, c.LocalNoiseStd)
	case c.LocalNoiseStd > 0 && c.ClipNorm == 0:
		return errors.New("local noise needs a clip norm to be calibrated to")
	}
	return nil
}

// FitIns is one fit task: train from the global parameters for one round.
type FitIns struct {
	Round  int
	Params []float32 // the global model; clients must not modify it
	Config FitConfig
	// Secure asks the client to keep its update for the round's secure sum (the protocol's
	// SumClient holds it) and to answer with FitRes.Update nil.
	Secure bool
}

// FitRes is a client's answer to a fit task.
type FitRes struct {
	// Update is the model delta: local parameters after training minus the global parameters.
	Update []float32
	// NumExamples is the number of local training examples, the client's weight in FedAvg.
	NumExamples int
	// Loss is the mean local training loss of the last epoch.
	Loss float64
	// Unclipped is 1 when the update's norm was at most the clip norm, else 0 (adaptive
	// clipping counts these; under secure aggregation only their sum is revealed).
	Unclipped float64
}

// EvalRes is a client's evaluation of the global model on its local test data.
type EvalRes struct {
	Loss        float64
	Accuracy    float64
	NumExamples int
}

// Client is one participant in federated training. Implementations train on local data that
// never leaves them.
type Client interface {
	Fit(ctx context.Context, ins FitIns) (FitRes, error)
	Evaluate(ctx context.Context, params []float32) (EvalRes, error)
}

// FitOutcome is what the transport learned from one client of the cohort.
type FitOutcome struct {
	Client ClientID
	Res    FitRes
	Err    error // non-nil when the client failed, dropped out or timed out
}

// EvalOutcome is the federated-evaluation counterpart of FitOutcome.
type EvalOutcome struct {
	Client ClientID
	Res    EvalRes
	Err    error
}

// Transport delivers tasks to clients: in-process in simulation, over the network in deployment.
// Fit, Evaluate and Exchange call deliver once per addressed client, from one goroutine at a
// time, as answers arrive; they return when every client has answered or ctx is done (clients
// that have not answered by then are delivered with an error wrapping ErrTimeout).
type Transport interface {
	NumClients() int
	Fit(ctx context.Context, cohort []ClientID, ins FitIns, deliver func(FitOutcome)) error
	Evaluate(ctx context.Context, cohort []ClientID, params []float32, deliver func(EvalOutcome)) error
	// Exchange carries one stage of the round's secure-sum protocol: msgs[id] to each client's
	// SumClient, and its reply back.
	Exchange(ctx context.Context, round, stage int, msgs map[ClientID][]byte, deliver func(id ClientID, reply []byte, err error)) error
}

// Errors a round records for clients it leaves out.
var (
	ErrTimeout   = errors.New("client did not answer before the round deadline")
	ErrDropped   = errors.New("client dropped out")
	ErrBadUpdate = errors.New("invalid update")
)

// ValidateUpdate checks a client's fit result before it may touch the aggregate.
func ValidateUpdate(res FitRes, dim int) error {
	if len(res.Update) != dim {
		return fmt.Errorf("%w: update has %d parameters, the model has %d", ErrBadUpdate, len(res.Update), dim)
	}
	if res.NumExamples < 1 {
		return fmt.Errorf("%w: example count %d, must be ≥ 1", ErrBadUpdate, res.NumExamples)
	}
	if i := firstNonFinite(res.Update); i >= 0 {
		return fmt.Errorf("%w: parameter %d is %v", ErrBadUpdate, i, res.Update[i])
	}
	return nil
}

// firstNonFinite returns the index of the first NaN or ±Inf in v, or −1. The fast path relies on
// x·0 being 0 for finite x and NaN otherwise, so a clean vector costs one multiply-add per entry.
func firstNonFinite(v []float32) int {
	var a0, a1, a2, a3 float32
	i := 0
	for ; i+4 <= len(v); i += 4 {
		w := v[i : i+4 : i+4]
		a0 += w[0] * 0
		a1 += w[1] * 0
		a2 += w[2] * 0
		a3 += w[3] * 0
	}
	for ; i < len(v); i++ {
		a0 += v[i] * 0
	}
	if a0+a1+a2+a3 == 0 {
		return -1
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}

// Strategy decides how a round is configured and how its updates become the next global model,
// in the spirit of Flower's strategies. Strategies that only need the weighted mean of the
// updates compose with secure aggregation; those that must see individual updates (median,
// Krum) say so through NeedsIndividualUpdates and are refused when a secure sum is on.
type Strategy interface {
	Name() string
	// ConfigureFit returns the local-training configuration for a round (FedProx sets μ here).
	ConfigureFit(round int, base FitConfig) FitConfig
	// NeedsIndividualUpdates reports whether AggregateFit reads Aggregate.Updates.
	NeedsIndividualUpdates() bool
	// AggregateFit updates global in place from the round's aggregate.
	AggregateFit(round int, global []float32, agg *Aggregate) error
	// AggregateEvaluate combines federated-evaluation results into one loss and accuracy.
	AggregateEvaluate(round int, results []EvalRes) (loss, accuracy float64)
}
