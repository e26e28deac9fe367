package main

import (
	crand "crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"shoal/data"
	"shoal/fl"
	"shoal/nn"
	"shoal/strategy"
	"shoal/trainer"
	"shoal/transport/grpctransport"
)

// runPlan is what simulate and server build from the same flags: the initial model and the
// engine (all but its transport and hooks). Both commands build it here, so a deployment runs
// the very configuration a simulation with the same flags runs.
type runPlan struct {
	engine    *fl.Engine
	model     *nn.Model // the initial model, from --seed
	params    []float32 // the global model the engine trains in place
	dropStage int       // simulated secure-sum dropout stage
	dim       *int      // the model size DP calibrates to (--trainer sets it from the handshake)
	trainers  *trainerPool
	// spec describes the model with the run's class list (the test set's): the server
	// announces it and refuses clients that would train another.
	spec grpctransport.ModelSpec
}

// buildPlan builds the run for the dataset fed (its test set is the central evaluation set; its
// training set, when loaded, is only the simulator's). The DP population size is --clients.
func buildPlan(o simOptions, fed *data.Federated, logger *slog.Logger) (*runPlan, error) {
	switch {
	case o.Clients < 1:
		return nil, usageErrorf("--clients must be ≥ 1, got %d", o.Clients)
	case o.Rounds < 1:
		return nil, usageErrorf("--rounds must be ≥ 1, got %d", o.Rounds)
	case !slices.Contains(data.PartitionKinds(), o.Partition):
		return nil, usageErrorf("--partition: unknown partition %q (valid: %s)", o.Partition, strings.Join(data.PartitionKinds(), ", "))
	case fed.Test == nil:
		return nil, fmt.Errorf("dataset %s has no test set to evaluate on", o.Dataset)
	}
	test := fed.Test
	model, err := nn.New(o.Model, nn.Shape{C: test.C, H: test.H, W: test.W}, test.Classes, rand.New(rand.NewPCG(o.Seed, 0x5ba1)))
	if err != nil {
		return nil, usageErrorf("--model: %v", err)
	}
	strat, err := strategy.New(o.Strategy, o.StrategyParams)
	if err != nil {
		return nil, usageErrorf("--strategy: %v", err)
	}
	sampler, err := newSampler(o.Sampling, o.Fraction, o.MinClients)
	if err != nil {
		return nil, err
	}
	seed := o.privacySeed()
	secure, dropStage, err := buildSecureSum(o.secOptions, o.Clients, o.expectedCohort(), seed)
	if err != nil {
		return nil, err
	}
	evaluator, err := trainer.NewEvaluator(model, test, o.Workers)
	if err != nil {
		return nil, err
	}
	evaluate := warnExplodingLoss(evaluator.Evaluate, test.Classes, logger)
	engine := &fl.Engine{
		Config: fl.EngineConfig{
			Rounds: o.Rounds, TargetAccuracy: o.TargetAccuracy, RoundTimeout: o.RoundTimeout,
			MinResults: o.MinResults, FederatedEval: o.FederatedEval, StageTimeout: o.StageTimeout,
			Fit: fl.FitConfig{Epochs: o.LocalEpochs, BatchSize: o.BatchSize, LR: float32(o.LR),
				Momentum: float32(o.Momentum), WeightDecay: float32(o.WeightDecay)},
		},
		Strategy: strat, Sampler: sampler, Source: o.samplerSource(),
		Evaluate: evaluate, SecureSum: secure, Logger: logger,
	}
	// The DP noise is calibrated to what a client can contribute to the sum the server noises:
	// the clip, enlarged by the secure sum's quantisation rounding (whichever protocol the
	// engine ends up running: a deployment rebuilds it with its identities).
	dim := model.NumParams()
	sensitivity := func(clip float64) float64 {
		if engine.SecureSum == nil {
			return clip
		}
		return engine.SecureSum.Sensitivity(clip, dim)
	}
	dp, err := buildPrivacy(o.secOptions, o.Sampling, o.Fraction, o.Clients, seed, dim, sensitivity)
	if err != nil {
		return nil, err
	}
	if dp != nil {
		engine.Privacy = dp
		linkDDPClip(engine)
	}
	params := slices.Clone(model.Params())
	// Keyed by the parameter vector the engine trains in place, which writeRunDir receives.
	runModels.Store(&params[0], describeModel(model, classNames(test), fed.Scaling, o.Dataset))
	return &runPlan{engine: engine, model: model, params: params, dropStage: dropStage, dim: &dim,
		spec: modelSpec(model, classNames(test))}, nil
}

func newSampler(sampling string, fraction float64, minClients int) (fl.Sampler, error) {
	var sampler fl.Sampler
	var err error
	switch sampling {
	case "fraction":
		sampler, err = fl.NewFractionSampler(fraction, minClients)
	case "poisson":
		sampler, err = fl.NewPoissonSampler(fraction)
	default:
		err = fmt.Errorf("unknown sampling %q (valid: fraction, poisson)", sampling)
	}
	if err != nil {
		return nil, usageErrorf("--sampling: %v", err)
	}
	return sampler, nil
}

// privacySeed is the seed of the randomness that protects clients — DP noise, secure-sum
// protocol randomness — or 0 for the OS CSPRNG. Only a simulation given --seed is seeded (a
// reproducible experiment, and its summary says so); a deployment never is.
func (o simOptions) privacySeed() uint64 {
	if o.seedGiven && !o.deployment {
		return o.Seed
	}
	return 0
}

// samplerSource is the stream cohorts are drawn from. Under DP the accountant's amplification by
// subsampling assumes the cohorts are secret, so unless the run is a seeded experiment the
// stream is keyed from the OS CSPRNG and owes nothing to the seed the run reports; without DP
// the reported seed reproduces the cohorts (nothing depends on their secrecy).
func (o simOptions) samplerSource() fl.SamplerSource {
	if o.dpOn() && o.privacySeed() == 0 {
		var key [32]byte
		_, _ = crand.Read(key[:]) // crypto/rand never fails short
		return rand.NewChaCha8(key)
	}
	return rand.NewPCG(o.Seed, 0xc0407)
}

func (o simOptions) dpOn() bool { return o.DP != "off" && o.DP != "" }

// expectedCohort is the number of clients a round expects: q·N (and at least the minimum cohort
// of fraction sampling).
func (o simOptions) expectedCohort() float64 {
	expected := o.Fraction * float64(o.Clients)
	if o.Sampling == "fraction" {
		expected = max(expected, float64(o.MinClients))
	}
	return expected
}

// warnExplodingLoss wraps the central evaluation to warn, once, when the test loss explodes:
// far above a uniform guess's ln(classes), or not finite. That is a diverging model (features
// on very different scales, or too high a learning rate), which otherwise only shows as a
// number in the progress lines.
func warnExplodingLoss(evaluate fl.Evaluator, classes int, logger *slog.Logger) fl.Evaluator {
	limit := 10 * math.Log(float64(classes))
	warned := false
	return func(params []float32) (float64, float64, error) {
		loss, acc, err := evaluate(params)
		if err == nil && !warned && !(loss <= limit) {
			warned = true
			logger.Warn("test loss is exploding: the model diverges; check that features are on comparable scales "+
				"(CSV: keep --standardize) or lower --lr", "loss", loss, "uniform_guess", math.Log(float64(classes)))
		}
		return loss, acc, err
	}
}

// targetByDataset makes --target-accuracy default to the dataset's own target
// (data.DefaultTargetAccuracy: 0.975 for mnist, 0 for the others) unless it is given, in
// whichever order --dataset and --target-accuracy are set (command line or --config).
func targetByDataset(fs *flag.FlagSet) {
	target, dataset := fs.Lookup("target-accuracy"), fs.Lookup("dataset")
	if target == nil || dataset == nil {
		return
	}
	t := &givenFlag{Value: target.Value}
	target.Value = t
	target.DefValue = "0"
	target.Usage = "stop at the first round whose test accuracy reaches this (0: run all rounds; default: 0.975 for mnist, 0 for the other datasets)"
	dataset.Value = datasetFlag{Value: dataset.Value, target: t}
}

// givenFlag remembers whether its flag was set.
type givenFlag struct {
	flag.Value
	given bool
}

func (f *givenFlag) String() string {
	if f == nil || f.Value == nil {
		return ""
	}
	return f.Value.String()
}

func (f *givenFlag) Get() any {
	if g, ok := f.Value.(flag.Getter); ok {
		return g.Get()
	}
	return f.String()
}

func (f *givenFlag) Set(s string) error {
	f.given = true
	return f.Value.Set(s)
}

// datasetFlag is --dataset: setting it sets the target accuracy's default too.
type datasetFlag struct {
	flag.Value
	target *givenFlag
}

func (f datasetFlag) String() string {
	if f.Value == nil {
		return ""
	}
	return f.Value.String()
}

func (f datasetFlag) Get() any {
	if g, ok := f.Value.(flag.Getter); ok {
		return g.Get()
	}
	return f.String()
}

func (f datasetFlag) Set(s string) error {
	if err := f.Value.Set(s); err != nil {
		return err
	}
	if !f.target.given {
		return f.target.Value.Set(strconv.FormatFloat(data.DefaultTargetAccuracy(s), 'g', -1, 64))
	}
	return nil
}
