package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"slices"
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
	// DataSeed, when set, replaces Seed for the synthetic data and the partition: they are
	// public set-up that the server and every client must share, while a DP deployment keeps
	// its seed (the cohorts) secret.
	DataSeed    uint64 `json:",omitempty"`
	Standardize bool
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
	fs.Uint64Var(&d.DataSeed, "data-seed", 0, "seed of the synthetic data and of the partition (default: --seed); in a deployment the server and every client must use the same")
	fs.BoolVar(&d.Standardize, "standardize", true, "standardise CSV features with the training split's mean and standard deviation (stored with the model)")
}

// dataSeed is the seed of the synthetic data and the partition: --data-seed, else --seed.
func (d dataOptions) dataSeed() uint64 {
	if d.DataSeed != 0 {
		return d.DataSeed
	}
	return d.Seed
}

// syntheticNeedsSeed is the error of a server or coordinator that would evaluate on synthetic
// data of its own random seed: its test set would belong to another federation than its
// clients' data (accuracy at chance, loss rising), so it must be given the clients' seed.
func (d dataOptions) syntheticNeedsSeed() error {
	if d.Dataset != "synthetic" || d.dataSeed() != 0 {
		return nil
	}
	return usageErrorf("--dataset synthetic needs --data-seed N (or --seed N): the synthetic federation is generated from it, and the server's test set must come from the same one as the clients' data (give them the same --data-seed)")
}

// source is what the dataset loader reads.
func (d dataOptions) source(testOnly bool) data.Source {
	return data.Source{Dir: d.DataDir, Path: d.DataPath, LabelColumn: d.LabelColumn, TestFraction: d.TestFraction,
		SyntheticAlpha: d.SyntheticAlpha, SyntheticBeta: d.SyntheticBeta, Clients: d.Clients, Seed: d.dataSeed(), TestOnly: testOnly,
		Raw: !d.Standardize}
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
	if err := fed.Federate(d.Partition, d.Clients, d.DirichletAlpha, d.dataSeed(), withTest); err != nil {
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
		fs.Var(strategyParamFlag{params: &t.StrategyParams, param: p}, p.Name, p.Usage)
	}
	fs.IntVar(&t.Rounds, "rounds", 100, "maximum number of rounds")
	fs.Float64Var(&t.TargetAccuracy, "target-accuracy", 0.975, "stop at the first round whose test accuracy reaches this (0: run all rounds)")
	targetByDataset(fs)
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

// parseArgs parses args: a bad flag or a positional argument is a usage error of one line (a
// mistyped flag with the closest flag name as a hint), -h is a helpRequest (run prints the
// help on stdout).
func parseArgs(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard) // the flag package would print the whole usage on every error
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpRequest{fs}
		}
		return usageErrorf("%s", flagError(fs, err))
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q (flags start with --; 'shoal help' lists the commands)", fs.Args())
	}
	return nil
}

// helpRequest is -h or --help: run prints the command's help, with fs's flags, on stdout.
type helpRequest struct{ fs *flag.FlagSet }

func (helpRequest) Error() string        { return "help requested" }
func (helpRequest) Is(target error) bool { return target == flag.ErrHelp }

var undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
var flagMention = regexp.MustCompile(`(for flag|for|argument:) -([A-Za-z0-9][A-Za-z0-9-]*)`)

// flagError rewrites an error of the flag package: flags spelled with --, and an unknown flag
// with the closest known name.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		hint := ""
		if near := closestFlag(fs, m[1]); near != "" {
			hint = fmt.Sprintf("; did you mean --%s?", near)
		}
		return fmt.Sprintf("unknown flag --%s%s (-h lists the flags)", m[1], hint)
	}
	return flagMention.ReplaceAllString(msg, "$1 --$2")
}

// closestFlag is the visible flag of fs nearest to name (edit distance, or a prefix), or "" if
// none is close.
func closestFlag(fs *flag.FlagSet, name string) string {
	best, bestD := "", max(2, len(name)/3)+1
	fs.VisitAll(func(f *flag.Flag) {
		if hidden(fs, f.Name) {
			return
		}
		d := editDistance(name, f.Name)
		if len(name) >= 3 && strings.HasPrefix(f.Name, name) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// hiddenFlags are flags a command defines only to refuse them with a reason (the server's
// simulated client behaviour): its help does not list them, and no hint suggests them.
var hiddenFlags = map[string][]string{
	"shoal server": simulationOnly,
}

func hidden(fs *flag.FlagSet, name string) bool {
	return slices.Contains(hiddenFlags[fs.Name()], name)
}

// flagKind is the placeholder of a flag's value in the help, and its usage: a back-quoted word
// of the usage, else the value's type as flag.UnquoteUsage names it — for a wrapped value (for
// which UnquoteUsage says only "value"), the type of what its Get returns, or its own kind.
func flagKind(f *flag.Flag) (kind, usage string) {
	kind, usage = flag.UnquoteUsage(f)
	if kind != "value" {
		return kind, usage
	}
	if k, ok := f.Value.(interface{ kind() string }); ok {
		return k.kind(), usage
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return kind, usage
	}
	switch g.Get().(type) {
	case string:
		kind = "string"
	case float64:
		kind = "float"
	case int, int64:
		kind = "int"
	case uint, uint64:
		kind = "uint"
	case time.Duration:
		kind = "duration"
	}
	return kind, usage
}

// strategyParamFlag is the flag of a strategy's hyper-parameter: set, it enters the run's
// strategy parameters; unset, the strategy uses its default.
type strategyParamFlag struct {
	params *strategy.Params
	param  strategy.Param
}

func (f strategyParamFlag) String() string {
	if f.params == nil {
		return ""
	}
	if v, ok := (*f.params)[f.param.Name]; ok {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return ""
}

// kind is the help's placeholder: int for a count. (No Get: configTOML writes only the
// parameters given, from StrategyParams.)
func (f strategyParamFlag) kind() string {
	if f.param.Integer {
		return "int"
	}
	return "float"
}

func (f strategyParamFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	(*f.params)[f.param.Name] = v
	return nil
}

// printHelp is a command's help: what it does, its flags (spelled --name) and examples.
func printHelp(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: shoal %s [flags]\n\n%s.\n\nFlags:\n", c.words, c.summary)
	fs.VisitAll(func(f *flag.Flag) {
		if hidden(fs, f.Name) {
			return
		}
		kind, usage := flagKind(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + kind
		}
		switch f.DefValue {
		case "", "0", "false", "0s", "NaN":
		default:
			if kind == "string" {
				usage += fmt.Sprintf(" (default %q)", f.DefValue)
			} else {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
		}
		fmt.Fprintf(w, "%s\n        %s\n", line, strings.ReplaceAll(usage, "\n", "\n        "))
	})
	if ex := examples[c.words]; len(ex) > 0 {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, e := range ex {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
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

// check refuses out-of-range training flags with the name of the flag (the engine and the
// sampler check them too, in their own terms).
func (t trainOptions) check() error {
	bad := func(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }
	switch {
	case bad(t.Fraction) || t.Fraction <= 0 || t.Fraction > 1:
		return usageErrorf("--fraction must be in (0, 1] (with --sampling poisson it is each client's probability), got %v", t.Fraction)
	case t.MinClients < 1:
		return usageErrorf("--min-clients must be ≥ 1, got %d", t.MinClients)
	case t.MinResults < 1:
		return usageErrorf("--min-results must be ≥ 1, got %d", t.MinResults)
	case t.LocalEpochs < 1:
		return usageErrorf("--local-epochs must be ≥ 1, got %d", t.LocalEpochs)
	case t.BatchSize < 1:
		return usageErrorf("--batch-size must be ≥ 1, got %d", t.BatchSize)
	case bad(t.LR) || t.LR <= 0:
		return usageErrorf("--lr (the client learning rate) must be a positive finite number, got %v", t.LR)
	case bad(t.Momentum) || t.Momentum < 0 || t.Momentum >= 1:
		return usageErrorf("--momentum must be in [0, 1), got %v", t.Momentum)
	case bad(t.WeightDecay) || t.WeightDecay < 0:
		return usageErrorf("--weight-decay must be ≥ 0, got %v", t.WeightDecay)
	case bad(t.TargetAccuracy) || t.TargetAccuracy < 0 || t.TargetAccuracy > 1:
		return usageErrorf("--target-accuracy must be in [0, 1] (0: run every round), got %v", t.TargetAccuracy)
	case t.RoundTimeout < 0:
		return usageErrorf("--round-timeout must be ≥ 0 (0: none), got %v", t.RoundTimeout)
	}
	return nil
}

// check refuses out-of-range flags of simulate with the name of the flag.
func (o simOptions) check() error {
	switch {
	case math.IsNaN(o.Dropout) || o.Dropout < 0 || o.Dropout >= 1:
		return usageErrorf("--dropout must be in [0, 1), got %v", o.Dropout)
	case math.IsNaN(o.StragglerFraction) || o.StragglerFraction < 0 || o.StragglerFraction > 1:
		return usageErrorf("--straggler-fraction must be in [0, 1], got %v", o.StragglerFraction)
	case o.StragglerDelay < 0:
		return usageErrorf("--straggler-delay must be ≥ 0, got %v", o.StragglerDelay)
	case o.Workers < 0:
		return usageErrorf("--workers must be ≥ 0 (0: one per CPU), got %d", o.Workers)
	}
	if err := o.uiOptions.check(o.command); err != nil {
		return err
	}
	return o.trainOptions.check()
}
