// Package trainer is the model side of Shoal's federated training: a Client that trains an
// nn.Model on local data and answers fit and evaluate tasks with a model delta (clipped and, for
// local DP, noised before it leaves) or a score, the per-round shuffling stream both the
// simulator and the network client seed it with, and the Evaluator that scores a global model
// on a held-out test set for the server.
//
// The simulator (package sim) and the networked client use the same Client, so what is tested
// in simulation is what runs in deployment. trainer depends on fl, nn, data and privacy only.
package trainer

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"shoal/fl"
	"shoal/nn"
	"shoal/privacy"
)

// Client trains Model on its local examples (X row-major, Y labels). Model is used exclusively
// by this Client for the duration of a call. Rand drives shuffling.
type Client struct {
	Model *nn.Model
	X     []float32
	Y     []int32
	TestX []float32
	TestY []int32
	Rand  *rand.Rand
	// NoiseSource drives local DP noise; nil means a fresh crypto/rand-keyed source.
	NoiseSource *privacy.Source
}

var _ fl.Client = (*Client)(nil)

// ShuffleRand is the stream that shuffles client id's local data in round. With the run's seed
// it is the same in the simulator and in a network client, so a deployment can reproduce a
// simulation bit for bit; seed 0 means unseeded (crypto/rand), as in any real deployment.
func ShuffleRand(seed uint64, round int, id fl.ClientID) *rand.Rand {
	if seed == 0 {
		var b [16]byte
		_, _ = crand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
		return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])))
	}
	return rand.New(rand.NewPCG(seed^0x5eed, uint64(round)<<32|uint64(id)))
}

// Fit trains from the global parameters and returns the delta local − global.
func (c *Client) Fit(ctx context.Context, ins fl.FitIns) (fl.FitRes, error) {
	if err := ctx.Err(); err != nil {
		return fl.FitRes{}, err
	}
	params := c.Model.Params()
	if len(ins.Params) != len(params) {
		return fl.FitRes{}, fmt.Errorf("global model has %d parameters, the local model %d", len(ins.Params), len(params))
	}
	if len(c.Y) == 0 {
		return fl.FitRes{}, errors.New("client has no training examples")
	}
	copy(params, ins.Params)
	cfg := nn.TrainConfig{
		Epochs: ins.Config.Epochs, BatchSize: ins.Config.BatchSize, LR: ins.Config.LR,
		Momentum: ins.Config.Momentum, WeightDecay: ins.Config.WeightDecay,
	}
	if ins.Config.ProxMu > 0 {
		cfg.ProxMu, cfg.ProxCenter = ins.Config.ProxMu, ins.Params
	}
	loss, err := c.Model.Train(c.X, c.Y, cfg, c.Rand)
	if err != nil {
		return fl.FitRes{}, fmt.Errorf("local training: %w", err)
	}
	update := make([]float32, len(params))
	for j, p := range params {
		update[j] = p - ins.Params[j]
	}
	res := fl.FitRes{Update: update, NumExamples: len(c.Y), Loss: loss}
	if ins.Config.ClipNorm > 0 {
		if err := c.privatize(ins.Config, &res); err != nil {
			return fl.FitRes{}, err
		}
	}
	return res, nil
}

// privatize clips and noises the update in place (see Privatize), with the model's layers.
func (c *Client) privatize(cfg fl.FitConfig, res *fl.FitRes) error {
	var sizes []int
	if cfg.PerLayerClip {
		sizes = c.Model.LayerSizes()
	}
	return Privatize(cfg, res, sizes, c.NoiseSource)
}

// Privatize clips res.Update to cfg.ClipNorm (flat, or split across layerSizes under
// PerLayerClip), records in res.Unclipped whether it was within the norm already, and adds local
// Gaussian noise when cfg.LocalNoiseStd > 0: all on the client, before anything leaves it. It
// does nothing when cfg.ClipNorm is 0. src drives the noise; nil means a fresh crypto/rand-keyed
// source. Every client that answers fit tasks — the built-in trainer and the external-trainer
// bridge (package trainer/process) — goes through this one function.
func Privatize(cfg fl.FitConfig, res *fl.FitRes, layerSizes []int, src *privacy.Source) error {
	if cfg.ClipNorm <= 0 {
		return nil
	}
	clip := float64(cfg.ClipNorm)
	res.Unclipped = 1
	if cfg.PerLayerClip {
		clips, err := privacy.SplitClipBySize(clip, layerSizes)
		if err != nil {
			return fmt.Errorf("per-layer clipping: %w", err)
		}
		norms, err := privacy.ClipPerLayer(res.Update, layerSizes, clips)
		if err != nil {
			return fmt.Errorf("per-layer clipping: %w", err)
		}
		for j, n := range norms {
			if n > clips[j] {
				res.Unclipped = 0
			}
		}
	} else {
		norm, err := privacy.ClipL2(res.Update, clip)
		if err != nil {
			return fmt.Errorf("clipping: %w", err)
		}
		if norm > clip {
			res.Unclipped = 0
		}
	}
	if cfg.LocalNoiseStd <= 0 {
		return nil
	}
	if src == nil {
		var err error
		if src, err = privacy.NewSource(); err != nil {
			return fmt.Errorf("local noise: %w", err)
		}
	}
	// Sensitivity 2S: locally, the neighbouring update is any other vector in the S-ball.
	noise, err := privacy.NewGaussianNoise(float64(cfg.LocalNoiseStd), 2*clip, len(res.Update))
	if err != nil {
		return fmt.Errorf("local noise: %w", err)
	}
	if err := noise.Add32(res.Update, res.Update, src); err != nil {
		return fmt.Errorf("local noise: %w", err)
	}
	return nil
}

// Evaluate scores the given parameters on the local test examples.
func (c *Client) Evaluate(ctx context.Context, params []float32) (fl.EvalRes, error) {
	if err := ctx.Err(); err != nil {
		return fl.EvalRes{}, err
	}
	if len(c.TestY) == 0 {
		return fl.EvalRes{}, nil
	}
	if len(params) != c.Model.NumParams() {
		return fl.EvalRes{}, fmt.Errorf("model has %d parameters, got %d", c.Model.NumParams(), len(params))
	}
	copy(c.Model.Params(), params)
	loss, acc, err := c.Model.Evaluate(c.TestX, c.TestY)
	if err != nil {
		return fl.EvalRes{}, fmt.Errorf("local evaluation: %w", err)
	}
	return fl.EvalRes{Loss: loss, Accuracy: acc, NumExamples: len(c.TestY)}, nil
}
