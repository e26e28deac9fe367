package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"shoal/report"
	"shoal/transport/grpctransport"
)

func init() {
	register(command{words: "server", summary: "coordinate a federated training over the network (gRPC, mutual TLS)", run: runServer})
}

// serverOptions are simulate's training flags plus the deployment's own.
type serverOptions struct {
	simOptions
	SeedGiven     bool          `json:"seed_given"`
	Listen        string        `json:"listen"`
	Certs         string        `json:"certs"`
	Insecure      bool          `json:"insecure"`
	Store         string        `json:"store"`
	Resume        bool          `json:"resume"`
	FitTimeout    time.Duration `json:"fit_timeout"`
	OverSelect    float64       `json:"over_select"`
	MetricsListen string        `json:"metrics_listen"`
	Heartbeat     time.Duration `json:"heartbeat"`
	ChunkSize     int           `json:"chunk_size"`
	WaitTimeout   time.Duration `json:"wait_timeout"`
	Linger        time.Duration `json:"linger"`
	// WaitFor is how many connected clients the server waits for before round 1
	// (--wait-clients); --min-clients is the sampler's minimum cohort, as in simulate.
	WaitFor int `json:"wait_for"`
	// AllowMissingCRL is a deployment choice of this invocation, never restored by --resume.
	AllowMissingCRL bool `json:"-"`
}

// simulationOnly are simulate flags that describe simulated behaviour; the server refuses them.
// --ddp-simulated-sum replaces SecAgg by an unmasked simulation of its sum: never a server's.
var simulationOnly = []string{"dropout", "straggler-fraction", "straggler-delay", "stage-dropout", "dropout-stage", "ddp-simulated-sum"}

func serverFlags(o *serverOptions, stderr io.Writer) *flag.FlagSet {
	fs := simulateFlags(&o.simOptions, stderr)
	fs.Init("shoal server", flag.ContinueOnError)
	o.command = "server"
	fs.Lookup("clients").Usage = "size N of the client population (DP's expected cohort is q·N; the demo partition's size)"
	fs.Lookup("seed").Usage = "seed of the initial model and the cohort sampling (0: random, reported)"
	fs.Lookup("workers").Usage = "goroutines of the central evaluation (default: number of CPUs)"
	fs.Lookup("cpuprofile").Usage = "write a CPU profile of the server to this file (go tool pprof)"
	fs.Lookup("out").Usage = "run directory, new or empty: one holding files is refused, except the run's own with --resume (default runs/server-<UTC time>)"
	fs.IntVar(&o.WaitFor, "wait-clients", 0, "wait for this many connected clients before round 1 (default: --min-clients)")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:7443", "address to serve clients on")
	fs.StringVar(&o.Certs, "certs", "", "certificate directory from 'shoal certs init' (mutual TLS)")
	fs.BoolVar(&o.AllowMissingCRL, "allow-missing-crl", false, "accept every certificate of the CA while --certs has no revoked.txt (default: refuse every client); deleting the list then un-revokes everyone")
	fs.BoolVar(&o.Insecure, "insecure", false, "serve plaintext and take client names on trust (testing only)")
	fs.StringVar(&o.Store, "store", "", "run store: an SQLite file (or an existing directory), or a PostgreSQL database postgres://user@host/db (docs/store.md); every completed round is committed")
	fs.BoolVar(&o.Resume, "resume", false, "continue the latest run in --store from its last committed round")
	fs.DurationVar(&o.FitTimeout, "fit-timeout", 10*time.Minute, "deadline of a round's fit stage (and of federated evaluation); later clients are left out")
	setDefault(fs, "stage-timeout", "2m") // a heartbeating but silent client must not stall a secure sum
	fs.Float64Var(&o.OverSelect, "over-select", 1, "ask this many times the clients a round needs and keep the first to answer (Bonawitz et al. 2019)")
	fs.StringVar(&o.MetricsListen, "metrics-listen", "", "serve Prometheus metrics on this address (/metrics)")
	fs.DurationVar(&o.Linger, "linger", 0, "keep the --metrics-listen endpoint up this long after the run ends (a signal ends it sooner)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 5*time.Second, "heartbeat interval; a client silent for three is dropped")
	fs.IntVar(&o.ChunkSize, "chunk-size", grpctransport.DefaultChunkSize, "payload bytes per message")
	fs.DurationVar(&o.WaitTimeout, "wait-timeout", 0, "give up when --wait-clients have not connected within this (0: wait forever)")
	return fs
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return serve(ctx, args, stdout, stderr, false)
}

// serve runs the server. reproducible makes it seed DP noise and cohorts from --seed as
// simulate does, so that a test can compare a deployment with a simulation bit for bit; it is
// reachable only through the Go API (tests), never from the command line.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer, reproducible bool) error {
	o, logger, err := parseServerOptions(args, stderr, reproducible)
	if err != nil {
		return err
	}
	run, err := openServerRun(ctx, o, logger)
	if err != nil {
		return err
	}
	defer run.close()
	o.finish(reproducible)
	fed, err := o.load(true) // the server evaluates; it never holds training data
	if err != nil {
		return err
	}
	plan, err := buildPlan(o.simOptions, fed, logger)
	if err != nil {
		return err
	}
	if plan.trainers, err = useTrainer(ctx, o.simOptions, plan, logger); err != nil {
		return err
	}
	defer plan.trainers.close()
	// Listen before anything is recorded: a server that cannot start leaves no run behind.
	lis, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	dir, err := claimRunDir(&o.Out, "server", o.Resume)
	if err == nil {
		defer dir.release()
		// Stopped by a signal or failing before round 1: no empty run stays in the store.
		defer run.discardUnstarted(stderr)
		err = run.begin(*o, plan)
	}
	if err != nil {
		lis.Close()
		return err
	}
	network, err := startNetwork(ctx, *o, plan, run, logger, lis)
	if err != nil {
		return err
	}
	defer network.close()
	if err := plan.engine.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	return network.run(ctx, o, plan, run, stdout, stderr)
}

// run runs the training over the network and writes the run directory; a signal is a clean
// stop after the last completed round.
func (n *serverNetwork) run(ctx context.Context, o *serverOptions, plan *runPlan, run *serverRun, stdout, stderr io.Writer) error {
	fmt.Fprintf(stderr, "shoal server: %s, %s on %s, %s, %d rounds, seed %d, listening on %s (%s) → %s\n",
		describeSecurity(plan.engine), o.Model, o.Dataset, o.Strategy, o.Rounds, o.Seed, n.addr, n.mode, o.Out)
	if run.checkpoint != nil {
		fmt.Fprintf(stderr, "resuming run %d after round %d\n", run.id, run.checkpoint.Round)
	}
	if o.CPUProfile != "" {
		stop, err := startCPUProfile(o.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	n.hook(plan.engine, *o, run, stderr)
	dash, err := startUI(o.simOptions, o.Certs, plan.engine, uiClients(n.srv), n.metrics.WireBytes, stderr, nil)
	if err != nil {
		return err
	}
	defer dash.close()
	dash.attach(plan.engine, run.history)
	began := time.Now()
	history, runErr := plan.engine.Run(ctx, plan.params)
	dash.finish(plan.engine, runErr)
	elapsed := time.Since(began).Seconds()
	all := append(run.history, history...)
	stopped, runErr := stoppedBySignal(ctx, runErr, all, stderr)
	if !stopped {
		runErr = n.finish(runErr)
	}
	summary := summarize(all, o.simOptions, plan.engine, elapsed)
	if len(all) > 0 { // a run that never started writes nothing
		if err := writeRunDir(o.simOptions, plan.engine.Privacy != nil, plan.params, all, summary); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if !stopped {
		in, out := n.metrics.WireBytes()
		fmt.Fprintf(stderr, "final test accuracy %.4f, loss %.4f after %d rounds in %.1fs (%s in, %s out on the wire); run directory %s\n",
			summary.FinalAccuracy, summary.FinalLoss, summary.RoundsRun, elapsed, report.ByteSize(in), report.ByteSize(out), o.Out)
		printPrivacySpent(stderr, summary, plan.engine)
	}
	if o.JSON {
		if err := json.NewEncoder(stdout).Encode(summary); err != nil {
			return err
		}
	}
	n.linger(ctx, o.Linger, stderr)
	return nil
}

// parseServerOptions parses and checks the flags; simulated behaviour is refused, and so is a
// seed for a DP run.
func parseServerOptions(args []string, stderr io.Writer, reproducible bool) (*serverOptions, *slog.Logger, error) {
	o := &serverOptions{}
	fs := serverFlags(o, stderr)
	if err := parseWithConfig(fs, args); err != nil {
		return o, nil, err
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		for _, name := range simulationOnly {
			switch {
			case f.Name != name || bad != nil:
			case name == "ddp-simulated-sum":
				bad = usageErrorf("--%s simulates the secure sum without masking; a server always runs it", name)
			default:
				bad = usageErrorf("--%s simulates client behaviour; real clients drop out by themselves", name)
			}
		}
	})
	if bad == nil {
		bad = o.check()
	}
	if bad != nil {
		return o, nil, bad
	}
	logger, err := o.logger(stderr)
	if err != nil {
		return o, nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["round-timeout"] && !given["fit-timeout"] {
		o.FitTimeout = o.RoundTimeout // simulate's name for the same deadline
	}
	if o.WaitFor <= 0 {
		o.WaitFor = max(o.MinClients, 1)
	}
	switch {
	case o.Insecure && o.Certs != "":
		return o, nil, usageErrorf("--insecure and --certs exclude each other")
	case !o.Insecure && o.Certs == "":
		return o, nil, usageErrorf("--certs DIR is required (mutual TLS); plaintext only with an explicit --insecure")
	case o.Resume && o.Store == "":
		return o, nil, usageErrorf("--resume needs --store")
	case o.FitTimeout <= 0 || o.StageTimeout <= 0:
		return o, nil, usageErrorf("--fit-timeout and --stage-timeout must be > 0 (got %v and %v): without a deadline one client "+
			"that keeps its connection alive but never answers stalls the run forever", o.FitTimeout, o.StageTimeout)
	case o.dpOn() && o.Seed != 0 && !reproducible:
		return o, nil, usageErrorf("--seed with --dp %s: a seed would make the cohorts and the noise reproducible by anyone "+
			"who reads the report, which voids the DP guarantee; leave --seed out (cohorts and noise then come from the OS CSPRNG)", o.DP)
	case !o.Resume && o.syntheticNeedsSeed() != nil:
		return o, nil, o.syntheticNeedsSeed()
	}
	return o, logger, nil
}

// finish fills in what a new run draws (the seed) and the defaults that depend on other flags.
func (o *serverOptions) finish(reproducible bool) {
	o.deployment = !reproducible
	if !o.Resume {
		o.drawSeed()
		o.SeedGiven = o.seedGiven
	}
	o.seedGiven = o.SeedGiven
}

// restore takes the training configuration of a stored run, keeping this invocation's
// deployment flags (address, certificates, timeouts, output).
func (o *serverOptions) restore(cfg []byte) error {
	keep := *o
	if err := json.Unmarshal(cfg, o); err != nil {
		return err
	}
	o.Listen, o.Certs, o.Insecure, o.Store, o.Resume = keep.Listen, keep.Certs, keep.Insecure, keep.Store, true
	o.MetricsListen, o.JSON, o.LogLevel, o.Heartbeat = keep.MetricsListen, keep.JSON, keep.LogLevel, keep.Heartbeat
	o.FitTimeout, o.StageTimeout, o.OverSelect, o.WaitTimeout = keep.FitTimeout, keep.StageTimeout, keep.OverSelect, keep.WaitTimeout
	o.WaitFor, o.Linger, o.CPUProfile, o.Workers = keep.WaitFor, keep.Linger, keep.CPUProfile, keep.Workers
	if keep.Out != "" {
		o.Out = keep.Out
	}
	return nil
}

// setDefault changes a flag's default (and what --help shows) for this command.
func setDefault(fs *flag.FlagSet, name, value string) {
	f := fs.Lookup(name)
	if err := f.Value.Set(value); err != nil {
		panic(err)
	}
	f.DefValue = value
}
