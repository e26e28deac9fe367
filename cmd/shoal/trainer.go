package main

// Bring your own model: --trainer runs the user's training program as a child process (package
// trainer/process, docs/trainer.md). These are the hooks simulate, server and client call; the
// model's layout and initial parameters come from the trainer's handshake.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"shoal/fl"
	"shoal/report"
	"shoal/sim"
	"shoal/trainer"
	"shoal/trainer/process"
)

// trainerOptions are --trainer and --trainer-timeout.
type trainerOptions struct {
	Trainer        string
	TrainerTimeout time.Duration
}

func (t *trainerOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&t.Trainer, "trainer", "", "bring your own model: run this command line (sh -c) as the trainer process "+
		"(protocol: docs/trainer.md); it trains and evaluates, Shoal keeps clipping, noise, secure sum and accounting; overrides --model")
	fs.DurationVar(&t.TrainerTimeout, "trainer-timeout", 0, "kill (and restart) a trainer whose fit or evaluate takes longer (0: the round's deadline only)")
}

// modelLabel names the model a run trains for its start-up line: the --trainer's when there is
// one (--model is then ignored), else model.
func (t trainerOptions) modelLabel(model string) string {
	if t.Trainer != "" {
		return "the --trainer's model"
	}
	return model
}

func (t trainerOptions) config(logger *slog.Logger) process.Config {
	return process.Config{Command: t.Trainer, CallTimeout: t.TrainerTimeout, Stderr: os.Stderr, Logger: logger}
}

// trainerPool is the run's trainer processes, closed together when the run ends.
type trainerPool struct {
	mu    sync.Mutex
	procs []*process.Trainer
}

func (p *trainerPool) start(ctx context.Context, cfg process.Config) (*process.Trainer, error) {
	t, err := process.Start(ctx, cfg)
	if err != nil {
		return nil, usageErrorf("--trainer: %v", err)
	}
	p.mu.Lock()
	p.procs = append(p.procs, t)
	p.mu.Unlock()
	return t, nil
}

func (p *trainerPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.procs {
		_ = t.Close()
	}
	p.procs = nil
}

// useTrainer makes plan train the --trainer model: a first process gives the layout and the
// initial parameters (seeded by --seed) and scores every global model on its test set (central
// evaluation); the plan's DP calibration is told the model's size. It returns nil hooks without
// --trainer.
func useTrainer(ctx context.Context, o simOptions, plan *runPlan, logger *slog.Logger) (*trainerPool, error) {
	if o.Trainer == "" {
		return nil, nil
	}
	pool := &trainerPool{}
	central, err := pool.start(ctx, o.trainerOptions.config(logger))
	if err != nil {
		return nil, err
	}
	init, err := central.InitialParams(ctx, o.Seed)
	if err != nil {
		pool.close()
		return nil, fmt.Errorf("--trainer: initial parameters: %w", err)
	}
	if len(plan.params) > 0 { // the built-in model's description goes with its vector
		runModels.Delete(&plan.params[0])
	}
	plan.params, *plan.dim = init, len(init)
	if len(init) > 0 { // model.bin and model.safetensors carry the trainer's layout
		runModels.Store(&init[0], trainerModel(central.Name(), central.Layout(), o.Dataset))
	}
	plan.engine.Evaluate = func(params []float32) (float64, float64, error) {
		res, err := central.Evaluate(context.Background(), -1, process.Data{All: true}, params)
		if err == nil && res.NumExamples == 0 {
			err = errors.New("the trainer's central evaluation covered no examples")
		}
		return res.Loss, res.Accuracy, err
	}
	logger.Info("external trainer", "trainer", central.Name(), "tensors", len(central.Layout()), "parameters", len(init))
	return pool, nil
}

// simTrainers is sim.Config.NewClient for --trainer: one trainer process per worker; each
// virtual client trains on its partition's indices into the trainer's training set.
func (p *trainerPool) simClients(ctx context.Context, o simOptions, logger *slog.Logger) func(int) (sim.ClientFactory, error) {
	if p == nil {
		return nil
	}
	seed := o.Seed
	return func(int) (sim.ClientFactory, error) {
		t, err := p.start(ctx, o.trainerOptions.config(logger))
		if err != nil {
			return nil, err
		}
		return func(vc sim.VirtualClient) fl.Client {
			c := &process.Client{Trainer: t, ID: vc.ID, Train: process.Data{Indices: vc.Train},
				Test: process.Data{Indices: vc.Test}, NoiseSource: vc.Noise}
			if vc.Round > 0 {
				c.Seed = trainer.ShuffleRand(seed, vc.Round, vc.ID).Uint64()
			}
			return c
		}, nil
	}
}

// trainerFactory is a network client's per-task client factory over one trainer process: on
// the indices of a demo shard (--partition-index), else on all of the trainer's own data.
func trainerFactory(ctx context.Context, o clientOptions, l *localData, pool *trainerPool, logger *slog.Logger) (func(int, fl.ClientID) (fl.Client, error), error) {
	t, err := pool.start(ctx, o.trainer.config(logger))
	if err != nil {
		return nil, err
	}
	train, test := process.Data{All: true}, process.Data{All: true}
	if l != nil {
		train, test = process.Data{Indices: l.trainIdx}, process.Data{Indices: l.testIdx}
	}
	seed := o.data.Seed
	return func(round int, id fl.ClientID) (fl.Client, error) {
		return &process.Client{Trainer: t, ID: id, Train: train, Test: test, Seed: trainer.ShuffleRand(seed, round, id).Uint64()}, nil
	}, nil
}

// trainerLocals is loadLocal under --trainer: one trainer process per replica, on a demo shard
// of the built-in dataset (--partition-index) or on the trainer's own data.
func trainerLocals(o clientOptions) ([]func(int, fl.ClientID) (fl.Client, error), string, error) {
	logger := slog.Default()
	var locals []localData
	if o.PartitionIndex >= 0 {
		var err error
		if locals, err = o.localData(); err != nil {
			return nil, "", err
		}
	}
	pool := &trainerPool{} // the processes live as long as the client; they exit when it does
	factories := make([]func(int, fl.ClientID) (fl.Client, error), max(1, len(locals)))
	for i := range factories {
		var l *localData
		if locals != nil {
			l = &locals[i]
		}
		f, err := trainerFactory(context.Background(), o, l, pool, logger)
		if err != nil {
			pool.close()
			return nil, "", err
		}
		factories[i] = f
	}
	desc := fmt.Sprintf("trainer %q on its own local data", o.trainer.Trainer)
	if locals != nil {
		desc = fmt.Sprintf("trainer %q on shard %d of %s (%d examples)", o.trainer.Trainer, o.PartitionIndex, o.data.Dataset, len(locals[0].trainIdx))
	}
	return factories, desc, nil
}

// trainerModel describes an external trainer's model for the run's model files: the name and
// the parameter layout of its handshake (tensor names and shapes, in the order of the flat
// parameter vector).
func trainerModel(name string, layout process.Layout, dataset string) report.ModelInfo {
	info := report.ModelInfo{Arch: "external", Trainer: name, Dataset: dataset}
	offset := 0
	for _, t := range layout {
		info.Tensors = append(info.Tensors, report.Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Offset: offset})
		offset += t.Size()
	}
	return info
}
