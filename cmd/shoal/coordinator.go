package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"shoal/fl"
	"shoal/pki"
	"shoal/securesum"
	"shoal/store"
	"shoal/tier"
	"shoal/ui"
)

func init() {
	register(command{words: "coordinator", summary: "coordinate a population across edges: one active per population, standbys take over (etcd)", run: runCoordinator})
	examples["coordinator"] = []string{
		"shoal coordinator --etcd http://etcd:2379 --population mnist --certs certs --store /data/fl.db --goal 1000 --min-group 100 --rounds 100",
		"shoal coordinator --etcd http://127.0.0.1:2379 --population demo --insecure --store run.db --dataset synthetic --data-seed 1 --model logreg --goal 8 --min-group 2",
		"shoal coordinator --etcd http://etcd:2379 --population mnist --certs certs --store /data/fl.db --goal 100 --min-group 10 --secure-sum he --he-committee 5 --he-threshold 3",
	}
	// Flags of `shoal server` that mean nothing to a coordinator (it serves no devices).
	hiddenFlags["shoal coordinator"] = append(slices.Clone(simulationOnly), "listen", "wait-clients", "wait-timeout", "metrics-listen",
		"linger", "chunk-size", "heartbeat", "resume", "out", "cpuprofile", "federated-eval")
}

type coordinatorOptions struct {
	serverOptions
	tier             tierOptions
	CertName         string
	EdgeServerName   string
	Goal             int
	MinGroup         int
	SelectionTimeout time.Duration
	MinFraction      float64
}

func coordinatorFlags(o *coordinatorOptions, stderr io.Writer) *flag.FlagSet {
	fs := serverFlags(&o.serverOptions, stderr)
	fs.Init("shoal coordinator", flag.ContinueOnError)
	o.command = "coordinator"
	o.tier.register(fs, "coordinator")
	fs.StringVar(&o.CertName, "cert-name", "coordinator", "the client certificate (in --certs) the coordinator presents to edges")
	fs.StringVar(&o.EdgeServerName, "edge-server-name", "", "name to check in the edges' certificates (default: the host of each edge's registered address)")
	fs.IntVar(&o.Goal, "goal", 0, "devices whose updates a round needs (0: --fraction/--sampling decide, as in server); asks --over-select times as many")
	fs.IntVar(&o.MinGroup, "min-group", 10, "fewest devices of an aggregation group; an edge holding fewer of a round's cohort contributes nothing that round")
	fs.DurationVar(&o.SelectionTimeout, "selection-timeout", 30*time.Second, "how long a round waits for ⌈goal·over-select⌉ devices before starting with at least --min-fraction of the goal")
	fs.Float64Var(&o.MinFraction, "min-fraction", 0.8, "fraction of --goal a round may start with once --selection-timeout has passed")
	setDefault(fs, "over-select", "1.3")
	fs.Lookup("he-committee").Usage = "HE: decryption committee size K of each group: a fresh key ceremony per group and round among K of its devices, drawn at random (≤ --min-group)"
	fs.Lookup("he-threshold").Usage = "HE: committee members T of a group needed to decrypt its sum"
	fs.Lookup("store").Usage = "run store (SQLite file, or postgres://… once that backend exists), shared by every coordinator of the population (required)"
	return fs
}

func parseCoordinatorOptions(args []string, stderr io.Writer) (*coordinatorOptions, *slog.Logger, error) {
	o := &coordinatorOptions{}
	fs := coordinatorFlags(o, stderr)
	if err := parseWithConfig(fs, args); err != nil {
		return nil, nil, err
	}
	var unused error
	fs.Visit(func(f *flag.Flag) {
		if hidden(fs, f.Name) && unused == nil {
			unused = usageErrorf("--%s means nothing to a coordinator (it serves no devices, resumes by itself and writes no run directory)", f.Name)
		}
	})
	if unused != nil {
		return nil, nil, unused
	}
	if err := o.tier.check(); err != nil {
		return nil, nil, err
	}
	if err := o.check(); err != nil {
		return nil, nil, err
	}
	switch {
	case o.Store == "":
		return nil, nil, usageErrorf("--store is required: a standby coordinator resumes the run from it")
	case o.Insecure == (o.Certs != ""):
		return nil, nil, usageErrorf("give --certs DIR (mutual TLS) or, for testing only, --insecure")
	case o.SecureSum == "he" && o.HECommittee > o.MinGroup:
		return nil, nil, usageErrorf("--he-committee %d is larger than --min-group %d: each group seats its decryption committee among its own devices", o.HECommittee, o.MinGroup)
	case o.DP == "distributed":
		return nil, nil, usageErrorf("--dp distributed splits noise among a round's clients; per-group noise shares are not implemented in the tier (use --dp central)")
	case o.FederatedEval:
		return nil, nil, usageErrorf("--federated-eval is not available in the tier")
	case o.Goal < 0 || o.MinGroup < 1 || !(o.MinFraction > 0 && o.MinFraction <= 1):
		return nil, nil, usageErrorf("--goal ≥ 0, --min-group ≥ 1 and --min-fraction in (0, 1] (got %d, %d, %v)", o.Goal, o.MinGroup, o.MinFraction)
	case o.Goal > 0 && o.Sampling == "poisson":
		return nil, nil, usageErrorf("--goal selects a fixed count; with --sampling poisson (DP) every device is included with probability --fraction instead")
	case o.FitTimeout <= 0 || o.StageTimeout <= 0:
		return nil, nil, usageErrorf("--fit-timeout and --stage-timeout must be > 0")
	case o.dpOn() && o.Seed != 0:
		return nil, nil, usageErrorf("--seed with --dp: the cohorts and the noise must come from the OS CSPRNG")
	case o.syntheticNeedsSeed() != nil:
		return nil, nil, o.syntheticNeedsSeed()
	}
	if err := checkCoordinatorUI(o); err != nil {
		return nil, nil, err
	}
	logger, err := o.logger(stderr)
	return o, logger, err
}

func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, logger, err := parseCoordinatorOptions(args, stderr)
	if err != nil {
		return err
	}
	cli, err := tier.Dial(ctx, o.tier.endpoints(), logger)
	if err != nil {
		return err
	}
	defer cli.Close()
	keys := tier.Keys{Population: o.tier.Population}
	fmt.Fprintf(stderr, "shoal coordinator %s: standby for population %s\n", o.tier.Name, o.tier.Population)
	lead, err := campaign(ctx, cli, keys, o, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "elected coordinator of population %s (term %d)\n", o.tier.Population, lead.Term())
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lead.Lost():
			cancel()
		case <-lctx.Done():
		}
	}()
	err = coordinate(lctx, o, cli, keys, lead, logger, stdout, stderr)
	select {
	case <-lead.Lost():
		return fmt.Errorf("lost the leadership of population %s (etcd lease expired): %w", o.tier.Population, tier.ErrNotLeader)
	default:
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	lead.Resign(rctx) // a clean stop hands over at once
	return err
}

// campaign waits as a standby until elected, retrying when etcd fails under it.
func campaign(ctx context.Context, cli *clientv3.Client, keys tier.Keys, o *coordinatorOptions, logger *slog.Logger) (*tier.Leadership, error) {
	for {
		lead, err := tier.Campaign(ctx, cli, keys, o.tier.Name, o.tier.LeaseTTL)
		if err == nil || ctx.Err() != nil {
			return lead, err
		}
		logger.Warn("election failed; campaigning again", "err", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// coordinate runs (or resumes) the population's run as its elected coordinator.
func coordinate(ctx context.Context, o *coordinatorOptions, cli *clientv3.Client, keys tier.Keys, lead *tier.Leadership, logger *slog.Logger, stdout, stderr io.Writer) error {
	rec, _, err := tier.LoadRun(ctx, cli, keys)
	if err != nil {
		return err
	}
	if rec != nil && rec.Complete {
		fmt.Fprintf(stderr, "run %s of population %s is complete\n", rec.Name, o.tier.Population)
		return nil
	}
	o.Resume = rec != nil
	run, err := openRunWhenFree(ctx, &o.serverOptions, logger, stderr)
	if err != nil {
		return err
	}
	defer run.close()
	if rec != nil {
		if _, err := tier.CheckTakeover(run.st, rec); err != nil {
			return err
		}
	}
	o.finish(false)
	fed, err := o.load(true)
	if err != nil {
		return err
	}
	plan, err := buildPlan(o.simOptions, fed, logger)
	if err != nil {
		return err
	}
	if err := run.begin(o.serverOptions, plan); err != nil {
		return err
	}
	if rec == nil {
		if rec, err = newRunRecord(o, run, plan); err == nil {
			err = lead.PutJSON(ctx, keys.Run(), rec)
		}
		if err != nil {
			return fmt.Errorf("run record: %w", err)
		}
	} else if run.checkpoint != nil {
		fmt.Fprintf(stderr, "taking over run %s after round %d\n", rec.Name, run.checkpoint.Round)
	}
	coord, err := wireCoordinator(ctx, o, cli, keys, lead, rec, plan, logger)
	if err != nil {
		return err
	}
	defer coord.Close()
	hookCoordinator(plan.engine, o, run, coord, lead, keys, stderr)
	dash, err := coordinatorUI(o, rec, plan, run, stderr)
	if err != nil {
		return err
	}
	defer dash.close()
	if err := lead.PutJSON(ctx, keys.Round(), firstPace(o, run, coord, lead)); err != nil {
		return err
	}
	history, runErr := plan.engine.Run(ctx, plan.params)
	dash.finish(plan.engine, runErr)
	return finishCoordinator(ctx, o, run, plan, append(run.history, history...), runErr, lead, keys, rec, stdout, stderr)
}

// coordinatorClientsNote is the dashboard's clients page of a coordinator.
const coordinatorClientsNote = "Devices connect to the population's edges (shoal edge), not to this coordinator: it asks the edges " +
	"for their device counts and rosters each round and receives group sums, so no device session is listed here."

// coordinatorUI serves the live dashboard (--ui) of the run this coordinator leads, named as
// etcd and the store name it, with the rounds committed before a takeover. A standby serves
// none: it holds no run until elected, and an operator's browser should reach the active one.
func coordinatorUI(o *coordinatorOptions, rec *tier.RunRecord, plan *runPlan, run *serverRun, stderr io.Writer) (*uiRun, error) {
	page := o.simOptions
	page.Out = rec.Name
	dash, err := startUI(page, o.Certs, plan.engine, nil, nil, stderr, nil)
	if err != nil {
		return nil, err
	}
	dash.attach(plan.engine, run.history)
	return dash, nil
}

// checkCoordinatorUI refuses, before a standby waits for its election, a --ui the elected
// coordinator could not serve: a non-loopback address without operator certificates.
func checkCoordinatorUI(o *coordinatorOptions) error {
	if o.UI == "" {
		return nil
	}
	loop, err := ui.Loopback(o.UI)
	if err != nil {
		return usageErrorf("--ui: %v", err)
	}
	certs := cmp.Or(o.UICerts, o.Certs)
	switch {
	case loop:
		return nil
	case certs == "":
		return usageErrorf("--ui: %v: %s is not loopback and --insecure gives no certificates; pass --ui-certs DIR with operator "+
			"certificates (shoal certs operator), or listen on %s", ui.ErrNeedsOperatorTLS, o.UI, ui.DefaultAddr)
	}
	if _, _, err := pki.OperatorTLS(certs); err != nil {
		return usageErrorf("--ui %s: %v", o.UI, err)
	}
	return nil
}

// openRunWhenFree opens the run store, waiting while a deposed coordinator that has not died
// yet still holds it.
func openRunWhenFree(ctx context.Context, o *serverOptions, logger *slog.Logger, stderr io.Writer) (*serverRun, error) {
	for said := false; ; {
		run, err := openServerRun(ctx, o, logger)
		if !errors.Is(err, store.ErrLocked) {
			return run, err
		}
		if !said {
			fmt.Fprintf(stderr, "waiting for the run store: %v\n", err)
			said = true
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// newRunRecord describes a new run for etcd: its name, the protocol and model devices are
// announced (with a fresh SecAgg run id every signature binds).
func newRunRecord(o *coordinatorOptions, run *serverRun, plan *runPlan) (*tier.RunRecord, error) {
	rec := &tier.RunRecord{StoreRun: run.id, Name: fmt.Sprintf("%s-run-%d", o.tier.Population, run.id)}
	if plan.trainers == nil {
		spec := plan.spec
		rec.Model = &spec
	}
	if o.SecureSum != "none" && o.SecureSum != "" {
		spec := o.secOptions.secureSpec()
		spec.RunID = make([]byte, 16)
		_, _ = rand.Read(spec.RunID)
		params, err := spec.Wire()
		if err != nil {
			return nil, err
		}
		rec.SecureSum, rec.SecureSumParams = o.SecureSum, params
	}
	return rec, nil
}

// wireCoordinator makes the engine's transport the population's edges and its secure sum the
// groups' master aggregation.
func wireCoordinator(ctx context.Context, o *coordinatorOptions, cli *clientv3.Client, keys tier.Keys, lead *tier.Leadership,
	rec *tier.RunRecord, plan *runPlan, logger *slog.Logger) (*tier.Coordinator, error) {
	members, err := tier.WatchMembers(ctx, cli, keys, logger)
	if err != nil {
		return nil, err
	}
	dial, err := edgeDialer(o)
	if err != nil {
		return nil, err
	}
	coord, err := tier.NewCoordinator(tier.CoordinatorConfig{Term: lead.Term(), Members: members, Dial: dial,
		MinGroup: o.MinGroup, StageTimeout: o.StageTimeout, Secure: rec.SecureSum != "", Logger: logger})
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	e := plan.engine
	var inner fl.SecureSum
	if rec.SecureSum != "" {
		if inner, err = securesum.FromWire(rec.SecureSum, rec.SecureSumParams); err != nil {
			return nil, err
		}
	}
	e.Transport, e.SecureSum = coord, &tier.Grouped{Inner: inner, Coord: coord, Log: logger}
	e.Config.RoundTimeout = o.FitTimeout
	// The coordinator's one stage holds every stage of the groups' sums on the edges (HE: the
	// key ceremony's three exchanges, three more if a member drops and another committee is
	// seated, then upload, approval and decryption).
	stages := time.Duration(6)
	if rec.SecureSum == "he" {
		stages = 10
	}
	e.Config.StageTimeout = stages*o.StageTimeout + 5*time.Second
	if o.Goal > 0 {
		if e.Sampler, err = tier.NewGoalSampler(coord, o.Goal, o.OverSelect); err != nil {
			return nil, usageErrorf("%v", err)
		}
	}
	if err := e.Validate(); err != nil {
		return nil, usageErrorf("%v", err)
	}
	return coord, nil
}

// edgeDialer connects to edges with the coordinator's client certificate (mutual TLS).
func edgeDialer(o *coordinatorOptions) (func(string) (*grpc.ClientConn, error), error) {
	opts := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30))}
	if o.Insecure {
		return func(addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		}, nil
	}
	if _, err := pki.ClientTLSConfig(o.Certs, o.CertName, "localhost"); err != nil {
		return nil, fmt.Errorf("--cert-name %s: %w (issue it with: shoal certs client --dir %s --name %s)", o.CertName, err, o.Certs, o.CertName)
	}
	return func(addr string) (*grpc.ClientConn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if o.EdgeServerName != "" {
			host = o.EdgeServerName
		}
		cfg, err := pki.ClientTLSConfig(o.Certs, o.CertName, host)
		if err != nil {
			return nil, err
		}
		return grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
	}, nil
}

// hookCoordinator waits for devices before each round (selection), commits each round to the
// run store only while still the leader, then publishes the round's metadata in etcd.
func hookCoordinator(e *fl.Engine, o *coordinatorOptions, run *serverRun, coord *tier.Coordinator, lead *tier.Leadership, keys tier.Keys, stderr io.Writer) {
	target := demand(o)
	var began time.Time
	cadence := 0.0 // seconds from one round's start to the next's: pace steering's T
	e.BeforeRound = func(ctx context.Context, round int) error {
		if !began.IsZero() {
			cadence = time.Since(began).Seconds()
		}
		began = time.Now()
		_, err := awaitSelection(ctx, coord, o, target, stderr)
		return err
	}
	e.Commit = func(cp fl.Checkpoint, rep fl.RoundReport) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := lead.Check(ctx); err != nil { // a deposed coordinator commits nothing
			return err
		}
		if err := run.commit(cp, rep); err != nil {
			return err
		}
		meta := tier.RoundMeta{Round: cp.Round, Committed: cp.Round, Term: lead.Term(), Groups: coord.Groups(cp.Round),
			Population: o.Clients, Demand: target, RoundSeconds: max(cadence, rep.Seconds), Edges: coord.Edges()}
		if err := lead.PutJSON(ctx, keys.Round(), meta); err != nil {
			return fmt.Errorf("round %d committed to the store, then etcd: %w", cp.Round, err)
		}
		return nil
	}
	e.OnRound = func(rep fl.RoundReport) { printRound(stderr, rep, o.Rounds) }
}

// firstPace is the round metadata before this coordinator's first round: edges steer devices
// from the start (the first check-ins are the thundering herd), with a prior round time no
// longer than --selection-timeout (tier.PriorRoundSeconds) until a round has been timed.
func firstPace(o *coordinatorOptions, run *serverRun, coord *tier.Coordinator, lead *tier.Leadership) tier.RoundMeta {
	committed := 0
	if run.checkpoint != nil {
		committed = run.checkpoint.Round
	}
	return tier.RoundMeta{Round: committed, Committed: committed, Term: lead.Term(), Population: o.Clients,
		Demand: demand(o), RoundSeconds: tier.PriorRoundSeconds(o.SelectionTimeout), Edges: max(coord.Edges(), 1)}
}

// demand is how many devices a round asks for.
func demand(o *coordinatorOptions) int {
	if o.Goal > 0 {
		return int(math.Ceil(o.OverSelect*float64(o.Goal) - 1e-9))
	}
	return max(o.MinResults, 1)
}

// awaitSelection waits until the edges hold target devices, or, after --selection-timeout, at
// least --min-fraction of the goal; it returns how many they hold.
func awaitSelection(ctx context.Context, coord *tier.Coordinator, o *coordinatorOptions, target int, stderr io.Writer) (int, error) {
	floor := max(o.MinResults, 1)
	if o.Goal > 0 {
		floor = max(floor, int(math.Ceil(o.MinFraction*float64(o.Goal)-1e-9)))
	}
	deadline := time.Now().Add(o.SelectionTimeout)
	said := false
	for {
		n := coord.Connected(ctx)
		if n >= target || n >= floor && time.Now().After(deadline) {
			return n, nil
		}
		if !said {
			fmt.Fprintf(stderr, "selection: waiting for %d devices across the edges (%d connected)\n", target, n)
			said = true
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return n, fmt.Errorf("selection (%d of %d devices): %w", n, target, ctx.Err())
		}
	}
}

// finishCoordinator marks a finished run complete in etcd (edges then tell devices) and
// reports it.
func finishCoordinator(ctx context.Context, o *coordinatorOptions, run *serverRun, plan *runPlan, all []fl.RoundReport, runErr error,
	lead *tier.Leadership, keys tier.Keys, rec *tier.RunRecord, stdout, stderr io.Writer) error {
	if runErr != nil {
		return runErr
	}
	rec.Complete = true
	if err := lead.PutJSON(ctx, keys.Run(), rec); err != nil {
		return fmt.Errorf("marking run %s complete: %w", rec.Name, err)
	}
	summary := summarize(all, o.simOptions, plan.engine, 0)
	fmt.Fprintf(stderr, "run %s complete: final test accuracy %.4f, loss %.4f after %d rounds\n",
		rec.Name, summary.FinalAccuracy, summary.FinalLoss, summary.RoundsRun)
	printPrivacySpent(stderr, summary, plan.engine)
	if o.JSON {
		return json.NewEncoder(stdout).Encode(summary)
	}
	return nil
}
