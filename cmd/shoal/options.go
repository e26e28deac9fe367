package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"shoal/data"
	"shoal/nn"
	"shoal/strategy"
)

// The flag groups below are shared by simulate, server and client: each command registers the
// groups it needs, so a flag means the same everywhere and is declared once. Every flag is also
// a key of the --config TOML file.

// dataOptions say where the examples come from and how they are split among clients.
type dataOptions struct {
	Dataset, DataDir, DataPath, LabelColumn string
	TestFraction                            float64
	SyntheticAlpha, SyntheticBeta           float64
	Partition                               string
	DirichletAlpha                          float64
	Clients                                 int
	Seed                                    uint64
}

func (d *dataOptions) register(fs *flag.FlagSet, clients int, clientsUsage, seedUsage string) {
	fs.StringVar(&d.Dataset, "dataset", "mnist", "dataset: "+strings.Join(data.Names(), ", "))
	fs.StringVar(&d.DataDir, "data-dir", "", "directory of the MNIST IDX files (default: the GoMNIST module's copy)")
	fs.StringVar(&d.DataPath, "data", "", "CSV file for --dataset csv")
	fs.StringVar(&d.LabelColumn, "label-column", "label", "label column of the CSV file")
	fs.Float64Var(&d.TestFraction, "test-fraction", 0.2, "fraction of a CSV dataset held out for testing")
	fs.Float64Var(&d.SyntheticAlpha, "synthetic-alpha", 1, "α of Synthetic(α, β): how much the clients' models differ")
	fs.Float64Var(&d.SyntheticBeta, "synthetic-beta", 1, "β of Synthetic(α, β): how much the clients' data differ")
	fs.StringVar(&d.Partition, "partition", "iid", "partition of the training set: "+strings.Join(data.PartitionKinds(), ", "))
	fs.Float64Var(&d.DirichletAlpha, "dirichlet-alpha", 0.5, "concentration α of the dirichlet partition (smaller is more skewed)")
	fs.IntVar(&d.Clients, "clients", clients, clientsUsage)
	fs.Uint64Var(&d.Seed, "seed", 0, seedUsage)
}

// source is what the dataset loader reads.
func (d dataOptions) source(testOnly bool) data.Source {
	return data.Source{Dir: d.DataDir, Path: d.DataPath, LabelColumn: d.LabelColumn, TestFraction: d.TestFraction,
		SyntheticAlpha: d.SyntheticAlpha, SyntheticBeta: d.SyntheticBeta, Clients: d.Clients, Seed: d.Seed, TestOnly: testOnly}
}

// load loads the dataset; an unknown name or a missing file argument is a usage error.
func (d dataOptions) load(testOnly bool) (*data.Federated, error) {
	fed, err := data.Load(d.Dataset, d.source(testOnly))
	if errors.Is(err, data.ErrUnknownDataset) || err != nil && strings.HasPrefix(err.Error(), "--") {
		return nil, usageErrorf("%v", err)
	}
	return fed, err
}

// federate loads the dataset and splits it among --clients with --partition (the simulator's
// federation, and a demo client's view of it).
func (d dataOptions) federate(withTest bool) (*data.Federated, error) {
	if d.Clients < 1 {
		return nil, usageErrorf("--clients must be ≥ 1, got %d", d.Clients)
	}
	fed, err := d.load(false)
	if err != nil {
		return nil, err
	}
	if err := fed.Federate(d.Partition, d.Clients, d.DirichletAlpha, d.Seed, withTest); err != nil {
		return nil, usageErrorf("--partition: %v", err)
	}
	return fed, nil
}

// trainOptions are the federated-training flags of simulate and server.
type trainOptions struct {
	Model                     string
	Fraction                  float64
	MinClients, MinResults    int
	Sampling                  string
	LocalEpochs, BatchSize    int
	LR, Momentum, WeightDecay float64
	Strategy                  string
	StrategyParams            strategy.Params `json:"strategy_params,omitempty"`
	Rounds                    int
	TargetAccuracy            float64
	RoundTimeout              time.Duration
	FederatedEval             bool
}

func (t *trainOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&t.Model, "model", "2nn", "model: "+strings.Join(nn.Names(), ", "))
	fs.Float64Var(&t.Fraction, "fraction", 0.1, "fraction C of clients sampled per round (the rate q with --sampling poisson)")
	fs.IntVar(&t.MinClients, "min-clients", 2, "minimum clients sampled per round (fraction sampling)")
	fs.IntVar(&t.MinResults, "min-results", 1, "fewest valid updates a round needs; fewer leaves the model unchanged")
	fs.StringVar(&t.Sampling, "sampling", "fraction", "client sampling: fraction (uniform, fixed size) or poisson (each client with probability --fraction)")
	fs.IntVar(&t.LocalEpochs, "local-epochs", 1, "local epochs E per round")
	fs.IntVar(&t.BatchSize, "batch-size", 10, "local minibatch size B")
	fs.Float64Var(&t.LR, "lr", 0.1, "client learning rate")
	fs.Float64Var(&t.Momentum, "momentum", 0, "client SGD momentum")
	fs.Float64Var(&t.WeightDecay, "weight-decay", 0, "client weight decay")
	fs.StringVar(&t.Strategy, "strategy", "fedavg", "strategy: "+strings.Join(strategy.Names(), ", "))
	// Each strategy declares its hyper-parameters; every one becomes a flag.
	t.StrategyParams = strategy.Params{}
	for _, p := range strategy.AllParams() {
		fs.Func(p.Name, p.Usage, func(s string) error {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return err
			}
			t.StrategyParams[p.Name] = v
			return nil
		})
	}
	fs.IntVar(&t.Rounds, "rounds", 100, "maximum number of rounds")
	fs.Float64Var(&t.TargetAccuracy, "target-accuracy", 0.975, "stop at the first round whose test accuracy reaches this (0: run all rounds)")
	fs.DurationVar(&t.RoundTimeout, "round-timeout", 0, "deadline of a round's fit stage; later clients are left out (0: none)")
	fs.BoolVar(&t.FederatedEval, "federated-eval", false, "also evaluate on each sampled client's local test data")
}

// outputOptions say where a run's results and logs go.
type outputOptions struct {
	Out      string
	JSON     bool
	LogLevel string
}

func (o *outputOptions) register(fs *flag.FlagSet, outUsage, logLevel string) {
	fs.StringVar(&o.Out, "out", "", outUsage)
	fs.BoolVar(&o.JSON, "json", false, "print exactly one JSON summary object on stdout")
	fs.StringVar(&o.LogLevel, "log-level", logLevel, "log level on stderr: debug, info, warn, error")
}

// logger is the command's structured logger on stderr at --log-level.
func (o outputOptions) logger(stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, usageErrorf("--log-level: %v", err)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})), nil
}

// parseArgs parses args: a bad flag or a positional argument is a usage error, -h is
// flag.ErrHelp.
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

// parseWithConfig parses args, then fills every flag not given on the command line from the
// TOML file named by --config (if the command has one). Unknown keys are an error.
func parseWithConfig(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	cfg := fs.Lookup("config")
	if cfg == nil || cfg.Value.String() == "" {
		return nil
	}
	path := cfg.Value.String()
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
