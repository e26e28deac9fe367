package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"shoal/fl"
	"shoal/securesum"
	"shoal/sim"
)

func init() {
	register(command{words: "simulate", summary: "run a federated training with many virtual clients in one process", run: runSimulate})
}

// simOptions are the flags of shoal simulate (each also a key of the --config TOML file); the
// server takes them too, less the simulated behaviour.
type simOptions struct {
	dataOptions
	trainOptions
	secOptions
	outputOptions
	trainerOptions
	uiOptions
	Dropout, StragglerFraction float64
	StragglerDelay             time.Duration
	Workers                    int
	CPUProfile                 string
	DDPSimulatedSum            bool

	seedGiven  bool // --seed was set: a simulation then seeds its privacy randomness too (reproducible, not private)
	deployment bool // shoal server: randomness that protects clients is never seeded

	command string        // "simulate" or "server"
	flags   *flag.FlagSet // bound to these options: config.toml is written from it
}

func simulateFlags(o *simOptions, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shoal simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.command, o.flags = "simulate", fs
	fs.String("config", "", "TOML file of flag values (keys are flag names); flags given on the command line win")
	o.dataOptions.register(fs, 100, "number of clients", "seed for a reproducible simulation (0: a random seed, reported)")
	o.trainOptions.register(fs)
	o.secOptions.register(fs)
	o.outputOptions.register(fs, "run directory (default runs/simulate-<UTC time>)", "warn")
	o.trainerOptions.register(fs)
	o.uiOptions.register(fs)
	fs.Float64Var(&o.Dropout, "dropout", 0, "probability that a sampled client drops out before uploading")
	fs.Float64Var(&o.StragglerFraction, "straggler-fraction", 0, "fraction of sampled clients that answer --straggler-delay late")
	fs.DurationVar(&o.StragglerDelay, "straggler-delay", 0, "delay of a straggler")
	fs.IntVar(&o.Workers, "workers", 0, "clients trained at once (default: number of CPUs)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	fs.BoolVar(&o.DDPSimulatedSum, "ddp-simulated-sum", false, "--dp distributed, for utility experiments: release a sum of exactly SecAgg's "+
		"distribution without masking (Skellam noise drawn once for the cohort); NO secure aggregation (docs/privacy.md)")
	return fs
}

// drawSeed records whether --seed was given and draws one from crypto/rand when it was not.
func (o *simOptions) drawSeed() {
	o.seedGiven = o.Seed != 0
	if o.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.Seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o simOptions
	if err := parseWithConfig(simulateFlags(&o, stderr), args); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	logger, err := o.logger(stderr)
	if err != nil {
		return err
	}
	o.drawSeed()
	plan, err := buildSimulation(o, logger)
	if err != nil {
		return err
	}
	defer plan.trainers.close()
	dir, err := claimRunDir(&o.Out, "simulate", false)
	if err != nil {
		return err
	}
	defer dir.release()
	fmt.Fprintf(stderr, "shoal simulate: %s, %s on %s, %d clients (%s partition), %s, %d rounds, seed %d → %s\n",
		describeSecurity(plan.engine), o.modelLabel(o.Model), o.Dataset, o.Clients, o.Partition, o.Strategy, o.Rounds, o.Seed, o.Out)
	if o.CPUProfile != "" {
		stop, err := startCPUProfile(o.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	dash, err := startUI(o, "", plan.engine, nil, nil, stderr, logger)
	if err != nil {
		return err
	}
	defer dash.close()
	start := time.Now()
	plan.engine.OnRound = func(r fl.RoundReport) { printRound(stderr, r, o.Rounds) }
	dash.attach(plan.engine, nil)
	history, runErr := plan.engine.Run(ctx, plan.params)
	dash.finish(plan.engine, runErr)
	summary := summarize(history, o, plan.engine, time.Since(start).Seconds())
	stopped, runErr := stoppedBySignal(ctx, runErr, history, stderr)
	if len(history) > 0 { // a run that never started writes nothing
		if err := writeRunDir(o, plan.engine.Privacy != nil, plan.params, history, summary); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if !stopped {
		printOutcome(stderr, o, plan.engine, summary)
	}
	if o.JSON {
		return json.NewEncoder(stdout).Encode(summary)
	}
	return nil
}

// stoppedBySignal turns the end of a run cancelled by SIGINT/SIGTERM (ctx done) into a clean
// stop: it says after which round, and the run's error is dropped. Other errors are kept.
func stoppedBySignal(ctx context.Context, runErr error, history []fl.RoundReport, stderr io.Writer) (bool, error) {
	if ctx.Err() == nil {
		return false, runErr
	}
	if len(history) == 0 {
		fmt.Fprintln(stderr, "stopped by signal after round 0: the run never started; nothing written")
		return true, nil
	}
	last := history[len(history)-1]
	fmt.Fprintf(stderr, "stopped by signal after round %d (test accuracy %.4f); the run directory holds the rounds done\n",
		last.Round, last.Accuracy)
	return true, nil
}

// buildSimulation is the run plan over an in-process federation of --clients virtual clients.
func buildSimulation(o simOptions, logger *slog.Logger) (*runPlan, error) {
	fed, err := o.federate(o.FederatedEval)
	if err != nil {
		return nil, err
	}
	plan, err := buildPlan(o, fed, logger)
	if err != nil {
		return nil, err
	}
	if o.DDPSimulatedSum {
		if err := useSimulatedDDP(o, plan); err != nil {
			return nil, err
		}
	}
	if plan.trainers, err = useTrainer(context.Background(), o, plan, logger); err != nil {
		return nil, err
	}
	plan.engine.Transport, err = sim.New(plan.model, fed, sim.Config{NewClient: plan.trainers.simClients(context.Background(), o, logger),
		Workers: o.Workers, Dropout: o.Dropout, StragglerFraction: o.StragglerFraction,
		StragglerDelay: o.StragglerDelay, Seed: o.Seed, SeededNoise: o.privacySeed() != 0,
		SecureSum: plan.engine.SecureSum, StageDropout: o.StageDropout, DropStage: plan.dropStage,
	})
	if err != nil {
		plan.trainers.close()
		return nil, usageErrorf("%v", err)
	}
	if err := plan.engine.Validate(); err != nil {
		return nil, usageErrorf("%v", err)
	}
	return plan, nil
}

// useSimulatedDDP replaces the run's SecAgg by its distributed-DP simulation fast path
// (securesum.DDPSimulation): the same released sum in distribution, without masking.
func useSimulatedDDP(o simOptions, plan *runPlan) error {
	sa, ok := plan.engine.SecureSum.(*securesum.SecAgg)
	if o.DP != fl.PlacementDistributed || !ok {
		return usageErrorf("--ddp-simulated-sum needs --dp distributed with --secure-sum secagg or secaggplus")
	}
	if o.StageDropout > 0 {
		return usageErrorf("--ddp-simulated-sum has no protocol stages to drop out of: use --dropout")
	}
	sim, err := sa.SimulatedDDP()
	if err != nil {
		return usageErrorf("--ddp-simulated-sum: %v", err)
	}
	plan.engine.SecureSum, plan.dropStage = sim, 0
	return nil
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// printOutcome says how the run ended: target reached or not, final scores, privacy spent.
func printOutcome(w io.Writer, o simOptions, e *fl.Engine, s simSummary) {
	if r := e.StopReason; r != "" && s.RoundsToTarget == nil {
		fmt.Fprintf(w, "stopped after %d rounds: %s\n", s.RoundsRun, r)
	}
	if s.RoundsToTarget != nil {
		fmt.Fprintf(w, "reached %.2f%% test accuracy in %d rounds\n", 100*o.TargetAccuracy, *s.RoundsToTarget)
	} else if o.TargetAccuracy > 0 {
		fmt.Fprintf(w, "did not reach %.2f%% test accuracy in %d rounds\n", 100*o.TargetAccuracy, s.RoundsRun)
	}
	fmt.Fprintf(w, "final test accuracy %.4f, loss %.4f after %d rounds in %.1fs; run directory %s\n",
		s.FinalAccuracy, s.FinalLoss, s.RoundsRun, s.Seconds, o.Out)
	printPrivacySpent(w, s, e)
}
