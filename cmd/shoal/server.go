package main

import (
	"context"
	"crypto/rand"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"shoal/fl"
	"shoal/pki"
	"shoal/report"
	"shoal/store"
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
	// MinSampled is the sampler's minimum cohort (simulate's --min-clients); the server's
	// --min-clients is how many connected clients it waits for (WaitFor).
	MinSampled int `json:"min_sampled"`
	WaitFor    int `json:"wait_for"`
}

// simulationOnly are simulate flags that describe simulated behaviour; the server refuses them.
var simulationOnly = []string{"dropout", "straggler-fraction", "straggler-delay", "stage-dropout", "dropout-stage"}

func serverFlags(o *serverOptions, stderr io.Writer) *flag.FlagSet {
	fs := simulateFlags(&o.simOptions, stderr)
	fs.Init("shoal server", flag.ContinueOnError)
	fs.Lookup("min-clients").Usage = "wait for this many connected clients before round 1"
	fs.IntVar(&o.MinSampled, "min-sampled", 2, "minimum clients sampled per round (fraction sampling; simulate's --min-clients)")
	fs.Lookup("out").Usage = "run directory (default runs/server-<UTC time>)"
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:7443", "address to serve clients on")
	fs.StringVar(&o.Certs, "certs", "", "certificate directory from 'shoal certs init' (mutual TLS)")
	fs.BoolVar(&o.Insecure, "insecure", false, "serve plaintext and take client names on trust (testing only)")
	fs.StringVar(&o.Store, "store", "", "run store (SQLite file or directory): every completed round is committed")
	fs.BoolVar(&o.Resume, "resume", false, "continue the latest run in --store from its last committed round")
	fs.DurationVar(&o.FitTimeout, "fit-timeout", 0, "deadline of a round's fit stage; later clients are left out (0: --round-timeout)")
	fs.Float64Var(&o.OverSelect, "over-select", 1, "ask this many times the clients a round needs and keep the first to answer (Bonawitz et al. 2019)")
	fs.StringVar(&o.MetricsListen, "metrics-listen", "", "serve Prometheus metrics on this address (/metrics)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 5*time.Second, "heartbeat interval; a client silent for three is dropped")
	fs.IntVar(&o.ChunkSize, "chunk-size", grpctransport.DefaultChunkSize, "payload bytes per message")
	fs.DurationVar(&o.WaitTimeout, "wait-timeout", 0, "give up when --min-clients have not connected within this (0: wait forever)")
	return fs
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o serverOptions
	fs := serverFlags(&o, stderr)
	if err := parseWithConfig(fs, args); err != nil {
		return err
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		for _, name := range simulationOnly {
			if f.Name == name && bad == nil {
				bad = usageErrorf("--%s simulates client behaviour; real clients drop out by themselves", name)
			}
		}
	})
	if bad != nil {
		return bad
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return usageErrorf("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	waitFor := max(o.MinClients, 1)
	o.MinClients, o.WaitFor = o.MinSampled, waitFor // the engine's sampler takes simulate's meaning
	switch {
	case o.Insecure && o.Certs != "":
		return usageErrorf("--insecure and --certs exclude each other")
	case !o.Insecure && o.Certs == "":
		return usageErrorf("--certs DIR is required (mutual TLS); plaintext only with an explicit --insecure")
	case o.Resume && o.Store == "":
		return usageErrorf("--resume needs --store")
	}

	// The run store: open (or create) it, and with --resume take the run's configuration from it.
	var st *store.Store
	var runID int64
	start := 0
	var resumed []fl.RoundReport
	var resumedState serverState
	var resumedPrivacy []byte // the DP state of the last committed round
	var resumedModel []float32
	if o.Store != "" {
		var err error
		if o.Resume {
			st, err = store.OpenExisting(o.Store)
		} else {
			if err := os.MkdirAll(filepath.Dir(o.Store), 0o755); err != nil {
				return fmt.Errorf("run store: %w", err)
			}
			st, err = store.Open(o.Store)
		}
		if err != nil {
			return fmt.Errorf("run store: %w", err)
		}
		defer st.Close()
	}
	if o.Resume {
		var cfg []byte
		var err error
		runID, cfg, err = st.LatestRun()
		if err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		if err := o.restore(cfg); err != nil {
			return fmt.Errorf("resume: stored configuration: %w", err)
		}
		round, model, acct, state, err := st.LastRound(runID)
		if err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		start, resumedModel, resumedPrivacy = round, model, acct
		if len(state) > 0 {
			if err := json.Unmarshal(state, &resumedState); err != nil {
				return fmt.Errorf("resume: server state of round %d: %w", round, err)
			}
		}
		rows, err := st.History(runID)
		if err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		for i, row := range rows {
			var r fl.RoundReport
			if err := json.Unmarshal(row, &r); err != nil {
				return fmt.Errorf("resume: metrics of round %d: %w", i+1, err)
			}
			resumed = append(resumed, r)
		}
	}
	if !o.Resume {
		o.SeedGiven = o.Seed != 0
		if o.Seed == 0 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			o.Seed = binary.LittleEndian.Uint64(b[:]) | 1
		}
	}
	o.seedGiven = o.SeedGiven
	if o.Out == "" {
		o.Out = "runs/server-" + time.Now().UTC().Format("20060102-150405")
	}
	if o.FitTimeout == 0 {
		o.FitTimeout = o.RoundTimeout
	}

	run, err := buildSimulation(o.simOptions, logger, stderr)
	if err != nil {
		return err
	}
	engine := run.engine
	if len(resumedModel) > 0 {
		if len(resumedModel) != len(run.params) {
			return fmt.Errorf("resume: stored model has %d parameters, --model %s has %d", len(resumedModel), o.Model, len(run.params))
		}
		copy(run.params, resumedModel)
	}
	if st != nil && !o.Resume {
		cfg, err := json.Marshal(o)
		if err != nil {
			return err
		}
		if runID, err = st.CreateRun(cfg); err != nil {
			return fmt.Errorf("run store: %w", err)
		}
		if err := st.SaveInitialModel(runID, run.params); err != nil {
			return fmt.Errorf("run store: %w", err)
		}
	}

	// The engine's sampling stream continues exactly where the last committed round left it.
	pcg := mrand.NewPCG(o.Seed, 0xc0407)
	if len(resumedState.Sampler) > 0 {
		if err := pcg.UnmarshalBinary(resumedState.Sampler); err != nil {
			return fmt.Errorf("resume: sampler state: %w", err)
		}
	}
	engine.Rand = mrand.New(pcg)
	if len(resumedState.Strategy) > 0 {
		u, ok := engine.Strategy.(encoding.BinaryUnmarshaler)
		if !ok {
			return fmt.Errorf("resume: strategy %s cannot restore its saved state", engine.Strategy.Name())
		}
		if err := u.UnmarshalBinary(resumedState.Strategy); err != nil {
			return fmt.Errorf("resume: strategy state: %w", err)
		}
	} else if start > 0 && isStateful(engine.Strategy.Name()) {
		logger.Warn("resuming a stateful server optimiser without its state (it restarts from zero)", "strategy", engine.Strategy.Name())
	}
	if engine.Privacy != nil && start > 0 {
		dp, ok := engine.Privacy.(*fl.DPFedAvg)
		restored := false
		if ok && len(resumedPrivacy) > 0 {
			// The saved accountant and adaptive clip continue exactly where round start left them.
			restored = dp.RestoreState(resumedPrivacy) == nil
		}
		if !restored {
			if o.AdaptiveClip != 0 {
				return fmt.Errorf("resume: the stored round %d has no adaptive-clip state to continue from", start)
			}
			// Every committed round was accounted; composing them again restores the accountant.
			for r := 1; r <= start; r++ {
				if _, _, err := engine.Privacy.Account(r); err != nil {
					return fmt.Errorf("resume: privacy accountant: %w", err)
				}
			}
		}
	}

	var metrics *grpctransport.Metrics
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if metrics, err = grpctransport.NewMetrics(reg); err != nil {
		return err
	}
	wireRunID := "local-" + randomHex(6)
	if st != nil {
		wireRunID = fmt.Sprintf("run-%d", runID)
	}
	srvCfg := grpctransport.ServerConfig{
		RunID: wireRunID, ChunkSize: o.ChunkSize, Heartbeat: o.Heartbeat, Metrics: metrics, Logger: logger,
	}
	var creds []grpc.ServerOption
	if o.Insecure {
		srvCfg.Authenticate = grpctransport.InsecureAuthenticator()
		logger.Warn("serving plaintext without client authentication (--insecure)")
	} else {
		tlsCfg, err := pki.ServerTLSConfig(o.Certs)
		if err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		srvCfg.Authenticate = grpctransport.TLSAuthenticator(pki.PeerName)
		creds = append(creds, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	if st != nil {
		// The store's client registry records who took part, with the certificate serial.
		srvCfg.Admit = func(ctx context.Context, name string) error {
			serial := ""
			if p, ok := peer.FromContext(ctx); ok {
				if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
					if _, s, err := pki.PeerIdentity(info.State); err == nil {
						serial = s
					}
				}
			}
			if err := st.RegisterClient(name, serial); err != nil {
				return fmt.Errorf("client registry: %w", err)
			}
			return nil
		}
	}
	if engine.SecureSum != nil {
		// The clients' protocol halves must quantise with the server's maximum weight.
		fed, err := loadFederated(o.simOptions, stderr)
		if err != nil {
			return err
		}
		spec, err := secureSpec(o.secOptions, maxClientWeight(fed))
		if err != nil {
			return err
		}
		srvCfg.SecureSum, srvCfg.SecureSumParams = o.SecureSum, spec
	}
	srv, err := grpctransport.NewServer(srvCfg)
	if err != nil {
		return usageErrorf("%v", err)
	}
	engine.Transport = srv
	engine.Config.RoundTimeout = o.FitTimeout
	if engine.Sampler, err = srv.OverSelect(engine.Sampler, o.OverSelect); err != nil {
		return usageErrorf("--over-select: %v", err)
	}
	lis, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(metrics.CountingListener(lis), creds...) }()
	defer srv.Close(false, "server stopped", 5*time.Second)
	if o.MetricsListen != "" {
		ml, err := net.Listen("tcp", o.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(ml) }()
		defer hs.Close()
	}

	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := report.WriteJSON(o.Out, "config.json", o); err != nil {
		return err
	}
	mode := "mutual TLS"
	if o.Insecure {
		mode = "INSECURE plaintext"
	}
	fmt.Fprintf(stderr, "shoal server: %s, %s on %s, %s, %d rounds, seed %d, listening on %s (%s) → %s\n",
		run.desc, o.Model, o.Dataset, o.Strategy, o.Rounds, o.Seed, lis.Addr(), mode, o.Out)
	if start > 0 {
		fmt.Fprintf(stderr, "resuming run %d after round %d\n", runID, start)
	}

	began := time.Now()
	history := append([]fl.RoundReport(nil), resumed...)
	runErr := func() error {
		if err := engine.Validate(); err != nil {
			return err
		}
		if setup, ok := engine.SecureSum.(fl.SecureSumSetup); ok {
			// The one-time setup (HE key ceremony) runs as round 0 among the connected clients,
			// again after a resume: the new process holds no setup, and a new ceremony replaces
			// the committee's keys.
			if err := waitClients(ctx, srv, waitFor, o.WaitTimeout, stderr); err != nil {
				return err
			}
			if err := runSetup(ctx, engine, setup); err != nil {
				return fmt.Errorf("secure-sum setup (%s): %w", engine.SecureSum.Name(), err)
			}
			fmt.Fprintf(stderr, "secure-sum setup (%s) done\n", engine.SecureSum.Name())
		}
		for round := start + 1; round <= o.Rounds; round++ {
			need := max(o.MinResults, 1)
			if round == start+1 {
				need = max(need, waitFor)
			}
			if err := waitClients(ctx, srv, need, o.WaitTimeout, stderr); err != nil {
				return err
			}
			if engine.Privacy != nil {
				if err := engine.Privacy.CheckBudget(round); err != nil {
					if errors.Is(err, fl.ErrBudgetExhausted) {
						engine.StopReason = err.Error()
						return nil
					}
					return fmt.Errorf("round %d: %w", round, err)
				}
			}
			rep, err := engine.RunRound(ctx, round, run.params)
			if err != nil {
				return fmt.Errorf("round %d: %w", round, err)
			}
			if st != nil { // committed before it is reported: a printed round survives a crash
				if err := commitRound(st, runID, rep, run.params, pcg, engine); err != nil {
					return err
				}
			}
			history = append(history, rep)
			printRound(stderr, rep, o.Rounds)
			metrics.ObserveRound(rep)
			if o.TargetAccuracy > 0 && rep.Accuracy >= o.TargetAccuracy {
				engine.StopReason = fmt.Sprintf("reached the target accuracy %g", o.TargetAccuracy)
				return nil
			}
		}
		return nil
	}()
	elapsed := time.Since(began).Seconds()
	if runErr == nil {
		srv.Close(true, "run complete", 5*time.Second)
	}
	select {
	case err := <-serveErr:
		if err != nil && runErr == nil {
			runErr = err
		}
	default:
	}
	summary := summarize(history, o.simOptions, elapsed)
	summary.Protection = protection(run.engine)
	if err := writeRunDir(o.simOptions, run, history, summary); err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	in, out := metrics.WireBytes()
	fmt.Fprintf(stderr, "final test accuracy %.4f, loss %.4f after %d rounds in %.1fs (%s in, %s out on the wire); run directory %s\n",
		summary.FinalAccuracy, summary.FinalLoss, summary.RoundsRun, elapsed, byteSize(in), byteSize(out), o.Out)
	if summary.Epsilon != nil {
		fmt.Fprintf(stderr, "privacy spent: (ε = %.4g, δ = %g) — %s\n", *summary.Epsilon, *summary.Delta, engine.Privacy.Describe())
	}
	if o.JSON {
		return json.NewEncoder(stdout).Encode(summary)
	}
	return nil
}

// runSetup drives a protocol's setup stage by stage as round 0, as the engine does before its
// own round loop (the server runs rounds one by one to resume at any of them).
func runSetup(ctx context.Context, engine *fl.Engine, setup fl.SecureSumSetup) error {
	sum, err := setup.NewSetup(setup.SetupClients(engine.Transport.NumClients()))
	if err != nil {
		return err
	}
	for stage := 0; ; stage++ {
		msgs, done, err := sum.Next()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		stageCtx, cancel := ctx, context.CancelFunc(func() {})
		if engine.Config.StageTimeout > 0 {
			stageCtx, cancel = context.WithTimeout(ctx, engine.Config.StageTimeout)
		}
		_ = engine.Transport.Exchange(stageCtx, 0, stage, msgs, func(id fl.ClientID, reply []byte, err error) {
			if err == nil {
				err = sum.Receive(id, reply)
			}
			if err != nil {
				sum.Drop(id)
			}
		})
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("setup stage %d: %w", stage, ctx.Err())
		}
	}
}

// serverState is what the server commits with every round besides model, metrics and
// accountant: the sampler's random stream and the strategy's state (when it has one).
type serverState struct {
	Sampler  []byte `json:"sampler"`
	Strategy []byte `json:"strategy,omitempty"`
}

func commitRound(st *store.Store, runID int64, rep fl.RoundReport, params []float32, pcg *mrand.PCG, engine *fl.Engine) error {
	var state serverState
	var err error
	if state.Sampler, err = pcg.MarshalBinary(); err != nil {
		return err
	}
	if m, ok := engine.Strategy.(encoding.BinaryMarshaler); ok {
		if state.Strategy, err = m.MarshalBinary(); err != nil {
			return fmt.Errorf("strategy state: %w", err)
		}
	}
	stateJSON, err := json.Marshal(state)
	if err != nil {
		return err
	}
	metricsJSON, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	var accountant []byte
	if dp, ok := engine.Privacy.(*fl.DPFedAvg); ok {
		if accountant, err = dp.MarshalState(); err != nil {
			return fmt.Errorf("privacy state: %w", err)
		}
	}
	if err := st.CommitRound(runID, rep.Round, params, metricsJSON, accountant, stateJSON); err != nil {
		return fmt.Errorf("commit round %d: %w", rep.Round, err)
	}
	return nil
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
	if keep.Out != "" {
		o.Out = keep.Out
	}
	return nil
}

func isStateful(strategy string) bool {
	switch strategy {
	case "fedavgm", "fedadam", "fedyogi", "fedadagrad":
		return true
	}
	return false
}

func waitClients(ctx context.Context, srv *grpctransport.Server, n int, timeout time.Duration, stderr io.Writer) error {
	if len(srv.Connected()) >= n {
		return nil
	}
	fmt.Fprintf(stderr, "waiting for %d clients (%d connected)\n", n, len(srv.Connected()))
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return srv.WaitForClients(ctx, n)
}

func printRound(w io.Writer, r fl.RoundReport, rounds int) {
	line := fmt.Sprintf("round %3d/%d  accuracy %.4f  loss %.4f  clients %d/%d  %.2fs",
		r.Round, rounds, r.Accuracy, r.Loss, r.Participants, r.Sampled, r.Seconds)
	if r.Delta > 0 {
		line += fmt.Sprintf("  ε %.3f", r.Epsilon)
	}
	if r.FedAccuracy > 0 {
		line += fmt.Sprintf("  fed-accuracy %.4f", r.FedAccuracy)
	}
	if r.Abandoned != "" {
		line += "  (abandoned: " + r.Abandoned + ")"
	}
	fmt.Fprintln(w, line)
}

// secureSpec is what a client needs to build its half of the run's secure sum.
func secureSpec(s secOptions, maxWeight float64) ([]byte, error) {
	return json.Marshal(secureSumSpec{Bits: s.SecAggBits, ClipRange: s.SecAggClipRange, MaxWeight: maxWeight,
		MaxDropout: s.MaxDropout, MaxCorrupt: s.MaxCorrupt, Degree: s.SecAggDegree,
		Committee: s.HECommittee, Threshold: s.HEThreshold})
}

type secureSumSpec struct {
	Bits       int     `json:"bits"`
	ClipRange  float64 `json:"clip_range"`
	MaxWeight  float64 `json:"max_weight"`
	MaxDropout float64 `json:"max_dropout"`
	MaxCorrupt float64 `json:"max_corrupt"`
	Degree     int     `json:"degree"`
	Committee  int     `json:"he_committee"`
	Threshold  int     `json:"he_threshold"`
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func byteSize(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
