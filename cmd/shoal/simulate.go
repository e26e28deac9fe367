package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"shoal/data"
	"shoal/fl"
	"shoal/nn"
	"shoal/report"
	"shoal/sim"
	"shoal/strategy"
)

func init() {
	register(command{words: "simulate", summary: "run a federated training with many virtual clients in one process", run: runSimulate})
}

// simOptions are the flags of shoal simulate (each also a key of the --config TOML file).
type simOptions struct {
	Dataset, DataDir, DataPath, LabelColumn string
	TestFraction                            float64
	SyntheticAlpha, SyntheticBeta           float64
	Model, Partition                        string
	DirichletAlpha                          float64
	Clients                                 int
	Fraction                                float64
	MinClients, MinResults                  int
	Sampling                                string
	LocalEpochs, BatchSize                  int
	LR, Momentum, WeightDecay               float64
	Strategy                                string
	ServerLR, ServerMomentum, ProxMu        float64
	TrimFraction                            float64
	KrumF, KrumKeep                         int
	Rounds                                  int
	Seed                                    uint64
	TargetAccuracy                          float64
	Dropout, StragglerFraction              float64
	StragglerDelay, RoundTimeout            time.Duration
	FederatedEval                           bool
	Workers                                 int
	Out                                     string
	JSON                                    bool
	LogLevel                                string
	CPUProfile                              string
	secOptions

	seedGiven bool // --seed was set: the run may use seeded (reproducible) randomness for privacy
}

func simulateFlags(o *simOptions, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shoal simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "TOML file of flag values (keys are flag names); flags given on the command line win")
	fs.StringVar(&o.Dataset, "dataset", "mnist", "dataset: mnist, synthetic or csv")
	fs.StringVar(&o.DataDir, "data-dir", "", "directory of the MNIST IDX files (default: the GoMNIST module's copy)")
	fs.StringVar(&o.DataPath, "data", "", "CSV file for --dataset csv")
	fs.StringVar(&o.LabelColumn, "label-column", "label", "label column of the CSV file")
	fs.Float64Var(&o.TestFraction, "test-fraction", 0.2, "fraction of a CSV dataset held out for testing")
	fs.Float64Var(&o.SyntheticAlpha, "synthetic-alpha", 1, "α of Synthetic(α, β): how much the clients' models differ")
	fs.Float64Var(&o.SyntheticBeta, "synthetic-beta", 1, "β of Synthetic(α, β): how much the clients' data differ")
	fs.StringVar(&o.Model, "model", "2nn", "model: "+strings.Join(nn.Names(), ", "))
	fs.StringVar(&o.Partition, "partition", "iid", "partition of the training set: "+strings.Join(data.PartitionKinds(), ", "))
	fs.Float64Var(&o.DirichletAlpha, "dirichlet-alpha", 0.5, "concentration α of the dirichlet partition (smaller is more skewed)")
	fs.IntVar(&o.Clients, "clients", 100, "number of clients")
	fs.Float64Var(&o.Fraction, "fraction", 0.1, "fraction C of clients sampled per round (the rate q with --sampling poisson)")
	fs.IntVar(&o.MinClients, "min-clients", 2, "minimum clients sampled per round (fraction sampling)")
	fs.IntVar(&o.MinResults, "min-results", 1, "fewest valid updates a round needs; fewer leaves the model unchanged")
	fs.StringVar(&o.Sampling, "sampling", "fraction", "client sampling: fraction (uniform, fixed size) or poisson (each client with probability --fraction)")
	fs.IntVar(&o.LocalEpochs, "local-epochs", 1, "local epochs E per round")
	fs.IntVar(&o.BatchSize, "batch-size", 10, "local minibatch size B")
	fs.Float64Var(&o.LR, "lr", 0.1, "client learning rate")
	fs.Float64Var(&o.Momentum, "momentum", 0, "client SGD momentum")
	fs.Float64Var(&o.WeightDecay, "weight-decay", 0, "client weight decay")
	fs.StringVar(&o.Strategy, "strategy", "fedavg", "strategy: "+strings.Join(strategy.Names(), ", "))
	fs.Float64Var(&o.ServerLR, "server-lr", 0, "server learning rate (default 1, adaptive strategies 0.01)")
	fs.Float64Var(&o.ServerMomentum, "server-momentum", 0, "FedAvgM server momentum (default 0.9)")
	fs.Float64Var(&o.ProxMu, "prox-mu", 0, "FedProx proximal μ (default 0.01)")
	fs.Float64Var(&o.TrimFraction, "trim-fraction", 0, "FedTrimmedAvg fraction cut at each end (default 0.2)")
	fs.IntVar(&o.KrumF, "krum-f", 0, "Krum: number of Byzantine clients tolerated")
	fs.IntVar(&o.KrumKeep, "krum-keep", 0, "MultiKrum: updates averaged (default n − f)")
	fs.IntVar(&o.Rounds, "rounds", 100, "maximum number of rounds")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed for a reproducible simulation (0: a random seed, reported)")
	fs.Float64Var(&o.TargetAccuracy, "target-accuracy", 0.975, "stop at the first round whose test accuracy reaches this (0: run all rounds)")
	fs.Float64Var(&o.Dropout, "dropout", 0, "probability that a sampled client drops out before uploading")
	fs.Float64Var(&o.StragglerFraction, "straggler-fraction", 0, "fraction of sampled clients that answer --straggler-delay late")
	fs.DurationVar(&o.StragglerDelay, "straggler-delay", 0, "delay of a straggler")
	fs.DurationVar(&o.RoundTimeout, "round-timeout", 0, "deadline of a round's fit stage; later clients are left out (0: none)")
	fs.BoolVar(&o.FederatedEval, "federated-eval", false, "also evaluate on each sampled client's local test data")
	fs.IntVar(&o.Workers, "workers", 0, "clients trained at once (default: number of CPUs)")
	fs.StringVar(&o.Out, "out", "", "run directory (default runs/simulate-<UTC time>)")
	fs.BoolVar(&o.JSON, "json", false, "print exactly one JSON summary object on stdout")
	fs.StringVar(&o.LogLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	addSecurityFlags(fs, &o.secOptions)
	return fs
}

// parseWithConfig parses args, then fills every flag not given on the command line from the
// TOML file named by --config. Unknown keys are an error.
func parseWithConfig(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	path := fs.Lookup("config").Value.String()
	if path == "" {
		return nil
	}
	var values map[string]any
	if _, err := toml.DecodeFile(path, &values); err != nil {
		return usageErrorf("config %s: %v", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for key, v := range values {
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return usageErrorf("config %s: unknown key %q (keys are the flag names)", path, key)
		}
		if given[key] {
			continue
		}
		s := fmt.Sprint(v)
		if fl, ok := v.(float64); ok {
			s = strconv.FormatFloat(fl, 'g', -1, 64)
		}
		if err := fs.Set(key, s); err != nil {
			return usageErrorf("config %s: key %q: %v", path, key, err)
		}
	}
	return nil
}

// simSummary is the --json contract of shoal simulate.
type simSummary struct {
	RoundsRun      int      `json:"rounds_run"`
	RoundsToTarget *int     `json:"rounds_to_target"`
	FinalAccuracy  float64  `json:"final_accuracy"`
	FinalLoss      float64  `json:"final_loss"`
	Seconds        float64  `json:"seconds"`
	Epsilon        *float64 `json:"epsilon,omitempty"` // (ε, δ) spent by the run, under DP
	Delta          *float64 `json:"delta,omitempty"`
	// Protection states what protects the clients' updates in this run: the secure-sum
	// protocol and the DP mechanism with their parameters and threat models.
	Protection []string       `json:"protection"`
	Seed       uint64         `json:"seed"`
	RunDir     string         `json:"run_dir"`
	History    []historyEntry `json:"history"`
}

type historyEntry struct {
	Round        int     `json:"round"`
	Accuracy     float64 `json:"accuracy"`
	Loss         float64 `json:"loss"`
	Participants int     `json:"participants"`
	Dropped      int     `json:"dropped"`
	Seconds      float64 `json:"seconds"`
	Epsilon      float64 `json:"epsilon,omitempty"`
	Delta        float64 `json:"delta,omitempty"`
	ClipNorm     float64 `json:"clip_norm,omitempty"`
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o simOptions
	fs := simulateFlags(&o, stderr)
	if err := parseWithConfig(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return usageErrorf("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.seedGiven = o.Seed != 0
	if o.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.Seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	if o.Out == "" {
		o.Out = "runs/simulate-" + time.Now().UTC().Format("20060102-150405")
	}
	run, err := buildSimulation(o, logger, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := report.WriteJSON(o.Out, "config.json", o); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "shoal simulate: %s, %s on %s, %d clients (%s partition), %s, %d rounds, seed %d → %s\n",
		run.desc, o.Model, o.Dataset, o.Clients, o.Partition, o.Strategy, o.Rounds, o.Seed, o.Out)
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	run.engine.OnRound = func(r fl.RoundReport) { printRound(stderr, r, o.Rounds) }
	history, runErr := run.engine.Run(ctx, run.params)
	elapsed := time.Since(start).Seconds()
	summary := summarize(history, o, elapsed)
	summary.Protection = protection(run.engine)
	if err := writeRunDir(o, run, history, summary); err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	if r := run.engine.StopReason; r != "" && summary.RoundsToTarget == nil {
		fmt.Fprintf(stderr, "stopped after %d rounds: %s\n", summary.RoundsRun, r)
	}
	if summary.RoundsToTarget != nil {
		fmt.Fprintf(stderr, "reached %.2f%% test accuracy in %d rounds\n", 100*o.TargetAccuracy, *summary.RoundsToTarget)
	} else if o.TargetAccuracy > 0 {
		fmt.Fprintf(stderr, "did not reach %.2f%% test accuracy in %d rounds\n", 100*o.TargetAccuracy, summary.RoundsRun)
	}
	fmt.Fprintf(stderr, "final test accuracy %.4f, loss %.4f after %d rounds in %.1fs; run directory %s\n",
		summary.FinalAccuracy, summary.FinalLoss, summary.RoundsRun, elapsed, o.Out)
	if summary.Epsilon != nil {
		fmt.Fprintf(stderr, "privacy spent: (ε = %.4g, δ = %g) — %s\n", *summary.Epsilon, *summary.Delta, run.engine.Privacy.Describe())
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(summary)
	}
	return nil
}

// simRun is a simulation ready to run.
type simRun struct {
	engine *fl.Engine
	params []float32
	desc   string
}

func buildSimulation(o simOptions, logger *slog.Logger, stderr io.Writer) (*simRun, error) {
	if o.Clients < 1 {
		return nil, usageErrorf("--clients must be ≥ 1, got %d", o.Clients)
	}
	if o.Rounds < 1 {
		return nil, usageErrorf("--rounds must be ≥ 1, got %d", o.Rounds)
	}
	if !slices.Contains(data.PartitionKinds(), o.Partition) {
		return nil, usageErrorf("--partition: unknown partition %q (valid: %s)", o.Partition, strings.Join(data.PartitionKinds(), ", "))
	}
	fed, err := loadFederated(o, stderr)
	if err != nil {
		return nil, err
	}
	rng := mrand.New(mrand.NewPCG(o.Seed, 0x5ba1))
	train := fed.Train
	model, err := nn.New(o.Model, nn.Shape{C: train.C, H: train.H, W: train.W}, train.Classes, rng)
	if err != nil {
		return nil, usageErrorf("--model: %v", err)
	}
	strat, err := strategy.New(o.Strategy, strategy.Options{
		ServerLR: o.ServerLR, ServerMomentum: o.ServerMomentum, ProxMu: o.ProxMu,
		TrimFraction: o.TrimFraction, Byzantine: o.KrumF, KrumKeep: o.KrumKeep,
	})
	if err != nil {
		return nil, usageErrorf("--strategy: %v", err)
	}
	var sampler fl.Sampler
	switch o.Sampling {
	case "fraction":
		sampler, err = fl.NewFractionSampler(o.Fraction, o.MinClients)
	case "poisson":
		sampler, err = fl.NewPoissonSampler(o.Fraction)
	default:
		err = fmt.Errorf("unknown sampling %q (valid: fraction, poisson)", o.Sampling)
	}
	if err != nil {
		return nil, usageErrorf("--sampling: %v", err)
	}
	var protoSeed uint64
	if o.seedGiven {
		protoSeed = o.Seed
	}
	secure, dropStage, err := buildSecureSum(o.secOptions, maxClientWeight(fed), len(fed.Clients), protoSeed)
	if err != nil {
		return nil, err
	}
	simulation, err := sim.New(model, fed, sim.Config{
		Workers: o.Workers, Dropout: o.Dropout, StragglerFraction: o.StragglerFraction,
		StragglerDelay: o.StragglerDelay, Seed: o.Seed, SeededNoise: o.seedGiven,
		SecureSum: secure, StageDropout: o.StageDropout, DropStage: dropStage,
	})
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	dp, err := buildPrivacy(o.secOptions, o.Sampling, o.Fraction, len(fed.Clients), o.seedGiven, o.Seed)
	if err != nil {
		return nil, err
	}
	engine := &fl.Engine{
		Config: fl.EngineConfig{
			Rounds: o.Rounds, TargetAccuracy: o.TargetAccuracy, RoundTimeout: o.RoundTimeout,
			MinResults: o.MinResults, FederatedEval: o.FederatedEval, StageTimeout: o.StageTimeout,
			Fit: fl.FitConfig{Epochs: o.LocalEpochs, BatchSize: o.BatchSize, LR: float32(o.LR),
				Momentum: float32(o.Momentum), WeightDecay: float32(o.WeightDecay)},
		},
		Strategy:  strat,
		Sampler:   sampler,
		Transport: simulation,
		Evaluate:  simulation.CentralEvaluator(fed.Test),
		Rand:      mrand.New(mrand.NewPCG(o.Seed, 0xc0407)),
		Logger:    logger,
		SecureSum: secure,
	}
	if dp != nil {
		engine.Privacy = dp
	}
	if err := engine.Validate(); err != nil {
		return nil, usageErrorf("%v", err)
	}
	params := append([]float32(nil), model.Params()...)
	desc := describeSecurity(secure)
	if dp != nil {
		desc += "; " + dp.Describe()
	}
	return &simRun{engine: engine, params: params, desc: desc}, nil
}

func loadFederated(o simOptions, stderr io.Writer) (*data.Federated, error) {
	var fed *data.Federated
	switch o.Dataset {
	case "mnist":
		train, test, err := data.LoadMNIST(o.DataDir)
		if err != nil {
			return nil, err
		}
		fed = &data.Federated{Train: train, Test: test}
	case "csv":
		if o.DataPath == "" {
			return nil, usageErrorf("--dataset csv needs --data FILE")
		}
		all, err := data.LoadCSVFile(o.DataPath, o.LabelColumn)
		if err != nil {
			return nil, err
		}
		train, test, err := all.Split(o.TestFraction, o.Seed)
		if err != nil {
			return nil, usageErrorf("--test-fraction: %v", err)
		}
		fed = &data.Federated{Train: train, Test: test}
	case "synthetic":
		s, err := data.Synthetic(o.SyntheticAlpha, o.SyntheticBeta, o.Clients, o.Seed)
		if err != nil {
			return nil, usageErrorf("--dataset synthetic: %v", err)
		}
		return s, nil // already split among clients by construction
	default:
		return nil, usageErrorf("unknown dataset %q (valid: mnist, synthetic, csv)", o.Dataset)
	}
	parts, err := data.Partition(o.Partition, fed.Train.Y, fed.Train.Classes, o.Clients, o.DirichletAlpha, o.Seed)
	if err != nil {
		return nil, usageErrorf("--partition: %v", err)
	}
	fed.Clients = parts
	if o.FederatedEval {
		// Local test data: the test set split IID, so federated evaluation estimates the same
		// population accuracy from the clients' side.
		testParts, err := data.Partition("iid", fed.Test.Y, fed.Test.Classes, min(o.Clients, fed.Test.Len()), 0, o.Seed+1)
		if err != nil {
			return nil, fmt.Errorf("split the test set among clients: %w", err)
		}
		fed.TestClients = testParts
	}
	return fed, nil
}

func summarize(history []fl.RoundReport, o simOptions, seconds float64) simSummary {
	s := simSummary{RoundsRun: len(history), Seconds: seconds, Seed: o.Seed, RunDir: o.Out, History: []historyEntry{}}
	for _, r := range history {
		s.History = append(s.History, historyEntry{Round: r.Round, Accuracy: r.Accuracy, Loss: r.Loss,
			Participants: r.Participants, Dropped: r.Dropped, Seconds: r.Seconds, Epsilon: r.Epsilon, Delta: r.Delta, ClipNorm: r.ClipNorm})
		if s.RoundsToTarget == nil && o.TargetAccuracy > 0 && r.Accuracy >= o.TargetAccuracy {
			round := r.Round
			s.RoundsToTarget = &round
		}
	}
	if n := len(history); n > 0 {
		s.FinalAccuracy, s.FinalLoss = history[n-1].Accuracy, history[n-1].Loss
		if last := history[n-1]; last.Delta > 0 {
			s.Epsilon, s.Delta = &last.Epsilon, &last.Delta
		}
	}
	return s
}

func writeRunDir(o simOptions, run *simRun, history []fl.RoundReport, summary simSummary) error {
	rows := make([][]string, len(history))
	acc := report.Series{Title: "test accuracy", YLabel: "accuracy"}
	loss := report.Series{Title: "test loss", YLabel: "cross-entropy"}
	eps := report.Series{Title: fmt.Sprintf("privacy spent (δ = %g)", o.Delta), YLabel: "ε"}
	for i, r := range history {
		rows[i] = []string{strconv.Itoa(r.Round), report.F(r.Accuracy), report.F(r.Loss), report.F(r.TrainLoss),
			strconv.Itoa(r.Participants), strconv.Itoa(r.Sampled), strconv.Itoa(r.Dropped), report.F(r.Seconds),
			report.F(r.Epsilon), report.F(r.Delta), report.F(r.ClipNorm)}
		acc.Points = append(acc.Points, report.Point{Round: r.Round, Value: r.Accuracy})
		loss.Points = append(loss.Points, report.Point{Round: r.Round, Value: r.Loss})
		eps.Points = append(eps.Points, report.Point{Round: r.Round, Value: r.Epsilon})
	}
	if err := report.WriteCSV(o.Out, "metrics.csv",
		[]string{"round", "accuracy", "loss", "train_loss", "participants", "sampled", "dropped", "seconds", "epsilon", "delta", "clip_norm"}, rows); err != nil {
		return err
	}
	series := []report.Series{acc, loss}
	if run.engine.Privacy != nil {
		series = append(series, eps)
	}
	if err := report.WritePlot(o.Out, "metrics.png", fmt.Sprintf("%s %s", o.Model, o.Dataset), series); err != nil {
		return err
	}
	if err := report.WriteModel(o.Out, "model.bin", o.Model, run.params); err != nil {
		return err
	}
	return report.WriteJSON(o.Out, "summary.json", summary)
}
