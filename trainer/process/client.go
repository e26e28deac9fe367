package process

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"shoal/fl"
	"shoal/privacy"
	"shoal/trainer"
)

// InitialParams asks the trainer for its model's initial parameters (seeded by seed).
func (t *Trainer) InitialParams(ctx context.Context, seed uint64) ([]float32, error) {
	var params []float32
	dim := t.layout.Size()
	err := t.call(ctx, "init", frame{hdr: map[string]any{"type": "init", "seed": seed}}, func(h header, r *bufio.Reader) error {
		if h.Type != "params" || h.Params != dim || h.Indices != 0 {
			return fmt.Errorf("%w: init answered with %q of %d parameters, the layout has %d", errProtocol, h.Type, h.Params, dim)
		}
		var err error
		params, err = readFloats(r, nil, dim)
		return err
	})
	if err != nil {
		return nil, err
	}
	if i := firstNonFinite(params); i >= 0 {
		return nil, fmt.Errorf("trainer init: initial parameter %d is %v", i, params[i])
	}
	return params, nil
}

// Data selects the examples a task runs on: all of the trainer's local data (a network client
// whose trainer loads its own data), or the listed indices into the trainer's training or test
// set (a simulation, where Shoal partitions one dataset among virtual clients).
type Data struct {
	All     bool
	Indices []int
}

func (d Data) header() (string, int) {
	if d.All {
		return "all", 0
	}
	return "indices", len(d.Indices)
}

// FitTask is one fit request.
type FitTask struct {
	Client fl.ClientID
	Round  int
	Data   Data
	Params []float32
	Config fl.FitConfig
	Seed   uint64 // the trainer's shuffling seed for this task
}

// FitResult is the trainer's answer: Params are the new local parameters (Kind "params") or the
// update (Kind "update").
type FitResult struct {
	Kind     string
	Params   []float32
	Examples int
	Loss     float64
	Metrics  map[string]float64
}

// Fit sends one fit task. The result is checked against the layout only; callers validate values.
func (t *Trainer) Fit(ctx context.Context, task FitTask) (FitResult, error) {
	dim := t.layout.Size()
	if len(task.Params) != dim {
		return FitResult{}, fmt.Errorf("trainer fit: %d parameters, the trainer's layout has %d", len(task.Params), dim)
	}
	data, n := task.Data.header()
	c := task.Config
	hdr := map[string]any{"type": "fit", "client": int(task.Client), "round": task.Round, "data": data,
		"indices": n, "params": dim, "config": map[string]any{
			"epochs": c.Epochs, "batch_size": c.BatchSize, "lr": c.LR, "momentum": c.Momentum,
			"weight_decay": c.WeightDecay, "prox_mu": c.ProxMu, "seed": task.Seed}}
	var res FitResult
	err := t.call(ctx, "fit", frame{hdr: hdr, params: task.Params, indices: task.Data.Indices}, func(h header, r *bufio.Reader) error {
		if h.Type != "fit_result" || (h.Kind != "params" && h.Kind != "update") {
			return fmt.Errorf("%w: fit answered with %q of kind %q (want fit_result, kind params or update)", errProtocol, h.Type, h.Kind)
		}
		if h.Params != dim || h.Indices != 0 {
			return fmt.Errorf("%w: fit returned %d parameters, the layout has %d", errProtocol, h.Params, dim)
		}
		res = FitResult{Kind: h.Kind, Examples: h.Examples, Loss: h.Loss, Metrics: h.Metrics}
		var err error
		res.Params, err = readFloats(r, nil, dim)
		return err
	})
	return res, err
}

// Evaluate scores params on the selected test examples.
func (t *Trainer) Evaluate(ctx context.Context, client fl.ClientID, d Data, params []float32) (fl.EvalRes, error) {
	dim := t.layout.Size()
	if len(params) != dim {
		return fl.EvalRes{}, fmt.Errorf("trainer evaluate: %d parameters, the trainer's layout has %d", len(params), dim)
	}
	data, n := d.header()
	hdr := map[string]any{"type": "evaluate", "client": int(client), "data": data, "indices": n, "params": dim}
	var res fl.EvalRes
	err := t.call(ctx, "evaluate", frame{hdr: hdr, params: params, indices: d.Indices}, func(h header, r *bufio.Reader) error {
		if h.Type != "evaluate_result" || h.Params != 0 || h.Indices != 0 {
			return fmt.Errorf("%w: evaluate answered with %q", errProtocol, h.Type)
		}
		res = fl.EvalRes{Loss: h.Loss, Accuracy: h.Accuracy, NumExamples: h.Examples}
		return nil
	})
	if err != nil {
		return fl.EvalRes{}, err
	}
	switch {
	case res.NumExamples < 0:
		return fl.EvalRes{}, fmt.Errorf("trainer evaluate: example count %d", res.NumExamples)
	case res.NumExamples > 0 && (!finite(res.Loss) || !(res.Accuracy >= 0 && res.Accuracy <= 1)):
		return fl.EvalRes{}, fmt.Errorf("trainer evaluate: loss %v and accuracy %v (want finite, accuracy in [0, 1])", res.Loss, res.Accuracy)
	}
	return res, nil
}

// Client is an fl.Client whose local training and evaluation run in a trainer process; Shoal
// keeps the rest. Fit validates what the trainer returns (layout, NaN/Inf, example count), turns
// new parameters into the update, and clips and noises it with trainer.Privatize — exactly as
// the built-in trainer.Client does — before the update leaves.
type Client struct {
	Trainer *Trainer
	ID      fl.ClientID
	// Train and Test select the client's examples; a Test with neither All nor Indices means
	// the client has no local evaluation data.
	Train, Test Data
	// Seed is the trainer's shuffling seed for the task (trainer.ShuffleRand's stream).
	Seed uint64
	// NoiseSource drives local DP noise; nil means a fresh crypto/rand-keyed source.
	NoiseSource *privacy.Source
}

var _ fl.Client = (*Client)(nil)

// Fit trains in the trainer process and returns the privatized delta.
func (c *Client) Fit(ctx context.Context, ins fl.FitIns) (fl.FitRes, error) {
	if err := ctx.Err(); err != nil {
		return fl.FitRes{}, err
	}
	if err := ins.Config.Validate(); err != nil {
		return fl.FitRes{}, fmt.Errorf("fit config: %w", err)
	}
	start := time.Now()
	out, err := c.Trainer.Fit(ctx, FitTask{Client: c.ID, Round: ins.Round, Data: c.Train, Params: ins.Params,
		Config: ins.Config, Seed: c.Seed})
	if err != nil {
		return fl.FitRes{}, err
	}
	return c.finish(ins, out, time.Since(start))
}

// FitSecondsMetric is the metric in which shoal_trainer reports the seconds spent in the user's
// fit; the rest of a fit's round trip is the bridge's cost (framing, transfer, process switch).
const FitSecondsMetric = "fit_seconds"

// finish turns the trainer's answer into the client's privatized update: the part of Fit after
// the round trip (split out so that the bridge benchmark times exactly the client's path).
func (c *Client) finish(ins fl.FitIns, out FitResult, roundTrip time.Duration) (fl.FitRes, error) {
	update := out.Params
	if out.Kind == "params" {
		for j, g := range ins.Params {
			update[j] -= g
		}
	}
	loss := out.Loss
	if v, ok := out.Metrics["loss"]; ok && loss == 0 {
		loss = v
	}
	res := fl.FitRes{Update: update, NumExamples: out.Examples, Loss: loss}
	if err := fl.ValidateUpdate(res, len(ins.Params)); err != nil {
		return fl.FitRes{}, fmt.Errorf("trainer fit for client %d: %w", c.ID, err)
	}
	if !finite(loss) {
		return fl.FitRes{}, fmt.Errorf("trainer fit for client %d: %w: loss %v", c.ID, fl.ErrBadUpdate, loss)
	}
	if len(out.Metrics) > 0 {
		c.Trainer.cfg.Logger.Debug("trainer fit", "client", c.ID, "round", ins.Round, "examples", out.Examples,
			"metrics", slices.Sorted(maps.Keys(out.Metrics)), "round_trip", roundTrip,
			"trainer_fit_seconds", out.Metrics[FitSecondsMetric])
	}
	var sizes []int
	if ins.Config.PerLayerClip {
		sizes = c.Trainer.layout.Sizes()
	}
	if err := trainer.Privatize(ins.Config, &res, sizes, c.NoiseSource); err != nil {
		return fl.FitRes{}, err
	}
	return res, nil
}

// Evaluate scores params in the trainer process on the client's local test examples.
func (c *Client) Evaluate(ctx context.Context, params []float32) (fl.EvalRes, error) {
	if err := ctx.Err(); err != nil {
		return fl.EvalRes{}, err
	}
	if !c.Test.All && len(c.Test.Indices) == 0 {
		return fl.EvalRes{}, nil
	}
	return c.Trainer.Evaluate(ctx, c.ID, c.Test, params)
}

func finite(x float64) bool { return x-x == 0 }

// firstNonFinite returns the index of the first NaN or ±Inf in v, or −1.
func firstNonFinite(v []float32) int {
	for i, x := range v {
		if x-x != 0 {
			return i
		}
	}
	return -1
}
