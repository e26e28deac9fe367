package fl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"
)

// Evaluator scores a global model on held-out data (centralised evaluation).
type Evaluator func(params []float32) (loss, accuracy float64, err error)

// EngineConfig is what the round loop needs beyond its collaborators.
type EngineConfig struct {
	Rounds int
	Fit    FitConfig
	// TargetAccuracy stops the run after the first round whose central accuracy reaches it
	// (0 disables).
	TargetAccuracy float64
	// RoundTimeout bounds the fit stage of a round; clients that have not answered are left out
	// (0: wait for all).
	RoundTimeout time.Duration
	// StageTimeout bounds each stage of a secure-sum protocol (0: none).
	StageTimeout time.Duration
	// MinResults is the fewest valid updates a round needs; with fewer the round is abandoned
	// and the global model is left unchanged.
	MinResults int
	// FederatedEval asks the cohort to evaluate the new global model on their local test data.
	FederatedEval bool
}

// RoundReport is what one round did, for progress output and the run history.
type RoundReport struct {
	Round        int     `json:"round"`
	Accuracy     float64 `json:"accuracy"`
	Loss         float64 `json:"loss"`
	Participants int     `json:"participants"`
	Sampled      int     `json:"sampled"`
	Dropped      int     `json:"dropped"`
	TrainLoss    float64 `json:"train_loss"`
	FedAccuracy  float64 `json:"fed_accuracy,omitempty"`
	FedLoss      float64 `json:"fed_loss,omitempty"`
	Abandoned    string  `json:"abandoned,omitempty"` // why the round left the model unchanged
	Epsilon      float64 `json:"epsilon,omitempty"`   // (ε, δ) spent after this round, under DP
	Delta        float64 `json:"delta,omitempty"`
	ClipNorm     float64 `json:"clip_norm,omitempty"`
	Seconds      float64 `json:"seconds"`
	// Stragglers are the dropped clients that had not answered by the fit deadline.
	Stragglers int `json:"stragglers,omitempty"`
	// Stages split the round's time: fit, each secure-sum stage, aggregation, evaluation
	// (the time of the stages the round ran, in order; for dashboards and benchmarks).
	Stages []StageTime `json:"stages,omitempty"`
}

// StageTime is the wall-clock time of one stage of a round.
type StageTime struct {
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
}

// stageTimer appends the time since its last call, under a name, to a round's stages.
type stageTimer struct {
	stages *[]StageTime
	last   time.Time
}

func newStageTimer(stages *[]StageTime) *stageTimer {
	return &stageTimer{stages: stages, last: time.Now()}
}

func (t *stageTimer) done(stage string) {
	if t == nil {
		return
	}
	now := time.Now()
	*t.stages = append(*t.stages, StageTime{Stage: stage, Seconds: now.Sub(t.last).Seconds()})
	t.last = now
}

// Engine runs a whole federated training: the one-time secure-sum setup, then round after
// round until the configured rounds, the target accuracy or the privacy budget end it. One Engine
// serves both simulation and deployment: only the Transport differs. It is the only round loop
// in Shoal.
type Engine struct {
	Config    EngineConfig
	Strategy  Strategy
	Sampler   Sampler
	Transport Transport
	// Source is the random stream cohorts are sampled from; its position is checkpointed.
	Source   SamplerSource
	Evaluate Evaluator // may be nil
	// SecureSum, if set, replaces the plain sum: the server then never sees an individual update.
	SecureSum SecureSum
	// Privacy, if set, clips, noises and accounts every round (differential privacy).
	Privacy ServerPrivacy
	Logger  *slog.Logger

	// BeforeRound, if set, is called before the secure-sum setup (round 0) and before every
	// round; an error stops the run (a deployment waits here for its clients).
	BeforeRound func(ctx context.Context, round int) error
	// Commit, if set, receives the checkpoint after every round, before the round is reported:
	// a deployment persists it, and an error stops the run (a round is never reported as done
	// unless it is committed).
	Commit func(cp Checkpoint, rep RoundReport) error
	// OnRound, if set, is called after every round (progress output).
	OnRound func(RoundReport)
	// OnSetup, if set, is called once the secure-sum setup has completed.
	OnSetup func()
	// StopReason says why the last Run stopped before its configured rounds ("" otherwise).
	StopReason string

	resume *Checkpoint // set by Restore: the next Run continues after it
	rng    *rand.Rand  // draws from Source
}

// Validate checks that the engine can run.
func (e *Engine) Validate() error {
	switch {
	case e.Strategy == nil:
		return errors.New("engine: no strategy")
	case e.Sampler == nil:
		return errors.New("engine: no client sampler")
	case e.Transport == nil:
		return errors.New("engine: no transport")
	case e.Source == nil:
		return errors.New("engine: no sampler source")
	case e.Config.Rounds < 1:
		return fmt.Errorf("rounds must be ≥ 1, got %d", e.Config.Rounds)
	case e.Config.TargetAccuracy < 0 || e.Config.TargetAccuracy > 1:
		return fmt.Errorf("target accuracy must be in [0, 1], got %v", e.Config.TargetAccuracy)
	case e.Config.MinResults < 1:
		return fmt.Errorf("minimum results per round must be ≥ 1, got %d", e.Config.MinResults)
	}
	if err := e.Config.Fit.Validate(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if e.Strategy.NeedsIndividualUpdates() && e.SecureSum != nil {
		return fmt.Errorf("strategy %s needs every client's update, but secure sum %s reveals only their sum: "+
			"use fedavg, fedprox, fedavgm, fedadam, fedyogi or fedadagrad", e.Strategy.Name(), e.SecureSum.Name())
	}
	if e.Strategy.NeedsIndividualUpdates() && e.Privacy != nil {
		return fmt.Errorf("strategy %s is not covered by the DP-FedAvg analysis (it is not a clipped sum): use a FedAvg-family strategy with --dp", e.Strategy.Name())
	}
	if e.Strategy.NeedsIndividualUpdates() && e.Config.MinResults < 3 {
		e.logger().Warn("robust strategy with fewer than 3 updates per round", "strategy", e.Strategy.Name())
	}
	return nil
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// Run trains global in place and returns the history of the rounds it ran. After Restore it
// starts from the checkpoint's model and continues with the round after it. A cancelled ctx
// stops before the next round (or stage) with ctx's error; a Commit error stops the run.
func (e *Engine) Run(ctx context.Context, global []float32) ([]RoundReport, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	first := 1
	if cp := e.resume; cp != nil {
		if len(cp.Model) != len(global) {
			return nil, fmt.Errorf("checkpoint of round %d holds a model of %d parameters, this run's has %d", cp.Round, len(cp.Model), len(global))
		}
		copy(global, cp.Model)
		first = cp.Round + 1
		e.resume = nil
	}
	e.rng = rand.New(e.Source)
	e.StopReason = ""
	if setup, ok := e.SecureSum.(SecureSumSetup); ok {
		// A resumed run holds no setup of its own: it runs a new one (a new HE ceremony).
		if err := e.before(ctx, 0); err != nil {
			return nil, err
		}
		if err := e.runSetup(ctx, setup); err != nil {
			return nil, fmt.Errorf("secure-sum setup (%s): %w", e.SecureSum.Name(), err)
		}
		if e.OnSetup != nil {
			e.OnSetup()
		}
	}
	var history []RoundReport
	for round := first; round <= e.Config.Rounds; round++ {
		if err := ctx.Err(); err != nil {
			return history, fmt.Errorf("stopped before round %d: %w", round, err)
		}
		if stop, err := e.budgetSpent(round); stop || err != nil {
			return history, err
		}
		if err := e.before(ctx, round); err != nil {
			return history, err
		}
		rep, cohort, err := e.runRound(ctx, round, global)
		if err != nil {
			return history, fmt.Errorf("round %d: %w", round, err)
		}
		if e.Commit != nil {
			// Committed before any client sees the new model (federated evaluation): a crash
			// after a release can never make a resumed run release the round's noise twice
			// while accounting for it once.
			cp, err := e.checkpoint(round, global)
			if err == nil {
				err = e.Commit(cp, rep)
			}
			if err != nil {
				return history, fmt.Errorf("commit round %d: %w", round, err)
			}
		}
		if err := e.federatedEval(ctx, round, cohort, global, &rep); err != nil {
			return history, fmt.Errorf("round %d: %w", round, err)
		}
		history = append(history, rep)
		if e.OnRound != nil {
			e.OnRound(rep)
		}
		if e.Config.TargetAccuracy > 0 && rep.Accuracy >= e.Config.TargetAccuracy {
			e.StopReason = fmt.Sprintf("reached the target accuracy %g", e.Config.TargetAccuracy)
			break
		}
	}
	return history, nil
}

func (e *Engine) before(ctx context.Context, round int) error {
	if e.BeforeRound == nil {
		return nil
	}
	if err := e.BeforeRound(ctx, round); err != nil {
		if round == 0 {
			return fmt.Errorf("before the secure-sum setup: %w", err)
		}
		return fmt.Errorf("before round %d: %w", round, err)
	}
	return nil
}

// budgetSpent reports whether the privacy budget forbids round (setting StopReason).
func (e *Engine) budgetSpent(round int) (bool, error) {
	if e.Privacy == nil {
		return false, nil
	}
	err := e.Privacy.CheckBudget(round)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrBudgetExhausted):
		e.StopReason = err.Error()
		e.logger().Info("stopping: privacy budget", "round", round, "reason", err)
		return true, nil
	}
	return true, fmt.Errorf("round %d: %w", round, err)
}

// RunRound runs one round: sample, fit, validate and aggregate, update, evaluate (centrally,
// then on the cohort with FederatedEval). Client failures are recorded and the round goes on
// without them; only errors of the server itself (strategy, evaluation, cancellation) are
// returned. Run commits a round before the cohort sees its model; RunRound alone commits nothing.
func (e *Engine) RunRound(ctx context.Context, round int, global []float32) (RoundReport, error) {
	rep, cohort, err := e.runRound(ctx, round, global)
	if err != nil {
		return rep, err
	}
	return rep, e.federatedEval(ctx, round, cohort, global, &rep)
}

// runRound is RunRound before federated evaluation; it returns the round's cohort.
func (e *Engine) runRound(ctx context.Context, round int, global []float32) (RoundReport, []ClientID, error) {
	start := time.Now()
	log := e.logger().With("round", round)
	rep := RoundReport{Round: round}
	if e.rng == nil {
		e.rng = rand.New(e.Source)
	}
	cohort := e.Sampler.Sample(round, e.Transport.NumClients(), e.rng)
	rep.Sampled = len(cohort)
	timer := newStageTimer(&rep.Stages)

	dim := len(global)
	var sum []float64 // the plain sum; a secure round gets its sum from the protocol instead
	var totalWeight, trainLoss, lossWeight, unclipped, maxWeight float64
	var updates []Update
	var holders []ClientID // clients holding an input for the secure sum
	keep := e.Strategy.NeedsIndividualUpdates()

	fitCtx := ctx
	if e.Config.RoundTimeout > 0 {
		var cancel context.CancelFunc
		fitCtx, cancel = context.WithTimeout(ctx, e.Config.RoundTimeout)
		defer cancel()
	}
	cfg := e.Strategy.ConfigureFit(round, e.Config.Fit)
	if e.Privacy != nil {
		cfg = e.Privacy.ConfigureFit(round, cfg)
		cfg.UnitWeights = true // user-level DP: every client counts the same (DP-FedAvg)
		rep.ClipNorm = float64(cfg.ClipNorm)
	}
	ins := FitIns{Round: round, Params: global, Config: cfg, Secure: e.SecureSum != nil}
	if !ins.Secure {
		sum = make([]float64, dim)
	}
	if len(cohort) > 0 {
		err := e.Transport.Fit(fitCtx, cohort, ins, func(o FitOutcome) {
			if o.Err == nil && ins.Secure {
				o.Err = validateSecureFit(o.Res)
			} else if o.Err == nil {
				o.Err = ValidateUpdate(o.Res, dim)
			}
			if o.Err != nil {
				rep.Dropped++
				if errors.Is(o.Err, ErrTimeout) {
					rep.Stragglers++
				}
				level := slog.LevelDebug
				if errors.Is(o.Err, ErrBadUpdate) {
					level = slog.LevelWarn
				}
				log.Log(ctx, level, "client left out of round", "client", o.Client, "err", o.Err)
				return
			}
			w := cfg.Weight(o.Res.NumExamples)
			trainLoss += w * o.Res.Loss
			lossWeight += w
			rep.Participants++
			if ins.Secure {
				holders = append(holders, o.Client)
				maxWeight = max(maxWeight, w)
				return
			}
			AddScaled(sum, o.Res.Update, w)
			totalWeight += w
			unclipped += o.Res.Unclipped
			if keep {
				updates = append(updates, Update{Client: o.Client, Delta: o.Res.Update, Weight: w})
			}
		})
		if err != nil && ctx.Err() != nil {
			return rep, nil, fmt.Errorf("fit stage: %w", ctx.Err())
		}
		if err != nil {
			log.Warn("fit stage ended early", "err", err)
		}
	}
	timer.done("fit")
	if lossWeight > 0 {
		rep.TrainLoss = trainLoss / lossWeight
	}
	count := rep.Participants
	if ins.Secure && rep.Participants >= e.Config.MinResults {
		res, err := e.secureSum(ctx, round, dim, holders, maxWeight, timer)
		switch {
		case err != nil && ctx.Err() != nil:
			return rep, nil, fmt.Errorf("secure sum %s: %w", e.SecureSum.Name(), ctx.Err())
		case err != nil:
			// Whatever went wrong inside the protocol, nothing was released: the round is lost,
			// the server keeps serving.
			rep.Abandoned = err.Error()
		default:
			sum, totalWeight, unclipped, count = res.Sum, res.Weight, res.Unclipped, res.Count
		}
		if rep.Abandoned != "" {
			count = 0
		}
		rep.Dropped += rep.Participants - count
		rep.Participants = count
	}

	switch {
	case rep.Abandoned != "":
	case count < e.Config.MinResults:
		rep.Abandoned = fmt.Sprintf("%d valid updates, fewer than the %d required", count, e.Config.MinResults)
	default:
		var mean []float32
		if e.Privacy != nil {
			var err error
			if mean, err = e.Privacy.Finalize(round, sum, count, unclipped); err != nil {
				return rep, nil, fmt.Errorf("privacy: %w", err)
			}
		} else {
			mean = make([]float32, dim)
			for j, s := range sum {
				mean[j] = float32(s / totalWeight)
			}
		}
		if err := e.aggregate(round, global, &Aggregate{Mean: mean, TotalWeight: totalWeight, Count: count, Updates: updates}); err != nil {
			if !errors.Is(err, ErrRoundAbandoned) {
				return rep, nil, err
			}
			rep.Abandoned = err.Error()
		}
	}
	if rep.Abandoned != "" {
		log.Warn("round abandoned; global model unchanged", "reason", rep.Abandoned)
	}
	if e.Privacy != nil {
		// Every round that ran is accounted, released or not: conservative and simple.
		eps, delta, err := e.Privacy.Account(round)
		if err != nil {
			return rep, nil, fmt.Errorf("privacy accountant: %w", err)
		}
		rep.Epsilon, rep.Delta = eps, delta
	}
	timer.done("aggregate") // with the DP noise and accounting

	if e.Evaluate != nil {
		loss, acc, err := e.Evaluate(global)
		if err != nil {
			return rep, nil, fmt.Errorf("central evaluation: %w", err)
		}
		rep.Loss, rep.Accuracy = loss, acc
		timer.done("evaluate")
	}
	rep.Seconds = time.Since(start).Seconds()
	log.Debug("round done", "participants", rep.Participants, "accuracy", rep.Accuracy, "seconds", rep.Seconds)
	return rep, cohort, nil
}

// aggregate lets the strategy update global from agg. A mean or a new model that is not finite
// (an update far outside any sane range, or a diverging optimiser) abandons the round: global
// is put back as it was, and the run goes on — one bad round never ends it.
func (e *Engine) aggregate(round int, global []float32, agg *Aggregate) error {
	if i := firstNonFinite(agg.Mean); i >= 0 {
		return fmt.Errorf("%w: the aggregate's coordinate %d is %v", ErrRoundAbandoned, i, agg.Mean[i])
	}
	before := slices.Clone(global)
	if err := e.Strategy.AggregateFit(round, global, agg); err != nil {
		copy(global, before)
		return fmt.Errorf("aggregate with %s: %w", e.Strategy.Name(), err)
	}
	if i := firstNonFinite(global); i >= 0 {
		v := global[i]
		copy(global, before)
		return fmt.Errorf("%w: the new model's parameter %d would be %v (a diverging optimiser — lower the learning rate — or an out-of-range update)", ErrRoundAbandoned, i, v)
	}
	return nil
}

// federatedEval asks the cohort to score the round's model on their local test data.
func (e *Engine) federatedEval(ctx context.Context, round int, cohort []ClientID, global []float32, rep *RoundReport) error {
	if !e.Config.FederatedEval || len(cohort) == 0 {
		return nil
	}
	evalCtx := ctx
	if e.Config.RoundTimeout > 0 {
		var cancel context.CancelFunc
		evalCtx, cancel = context.WithTimeout(ctx, e.Config.RoundTimeout)
		defer cancel()
	}
	var results []EvalRes
	timer := newStageTimer(&rep.Stages)
	defer timer.done("federated evaluation")
	err := e.Transport.Evaluate(evalCtx, cohort, global, func(o EvalOutcome) {
		if o.Err == nil && o.Res.NumExamples > 0 {
			results = append(results, o.Res)
		}
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("federated evaluation: %w", ctx.Err())
	}
	if len(results) > 0 {
		rep.FedLoss, rep.FedAccuracy = e.Strategy.AggregateEvaluate(round, results)
	}
	return nil
}

// secureSum runs the secure-sum protocol among the clients holding inputs: stage by stage, the
// server half's messages go out through the transport, replies come back, and clients that do
// not answer in time (or answer badly) are dropped from the protocol.
func (e *Engine) secureSum(ctx context.Context, round, dim int, holders []ClientID, maxWeight float64, timer *stageTimer) (SumResult, error) {
	srv, err := e.SecureSum.NewServer(round, holders, dim, maxWeight)
	if err != nil {
		return SumResult{}, err
	}
	if err := e.drive(ctx, round, srv, timer); err != nil {
		return SumResult{}, err
	}
	res, err := srv.Result()
	timer.done(e.SecureSum.Name() + " result")
	if err != nil {
		return SumResult{}, err
	}
	if len(res.Sum) != dim {
		return SumResult{}, fmt.Errorf("secure sum returned %d coordinates, the model has %d", len(res.Sum), dim)
	}
	return res, nil
}

// runSetup runs a protocol's one-time setup as round 0.
func (e *Engine) runSetup(ctx context.Context, setup SecureSumSetup) error {
	srv, err := setup.NewSetup(setup.SetupClients(e.Transport.NumClients()))
	if err != nil {
		return err
	}
	return e.drive(ctx, 0, srv, nil)
}

// drive carries a protocol's stages between its server half and the clients until it is done;
// timer (nil for the setup) records each stage's time.
func (e *Engine) drive(ctx context.Context, round int, srv SumServer, timer *stageTimer) error {
	log := e.logger().With("round", round, "protocol", e.SecureSum.Name())
	return DriveSecureSum(ctx, e.Transport, round, srv, e.Config.StageTimeout, log, func(stage int) {
		if timer != nil {
			timer.done(e.stageName(stage))
		}
	})
}

// Exchanger carries one stage of a secure-sum protocol to clients and their replies back
// (Transport's Exchange).
type Exchanger interface {
	Exchange(ctx context.Context, round, stage int, msgs map[ClientID][]byte, deliver func(id ClientID, reply []byte, err error)) error
}

// DriveSecureSum carries a protocol's stages between its server half srv and the clients until
// it is done: each stage's messages go out through x, replies go into srv, and a client that
// does not answer within stageTimeout (0: no stage deadline) or answers badly is dropped from
// the protocol. afterStage, if not nil, is called after each stage. The engine drives every
// secure sum with it, and so does an edge of the scale-out tier for its group.
func DriveSecureSum(ctx context.Context, x Exchanger, round int, srv SumServer, stageTimeout time.Duration, log *slog.Logger, afterStage func(stage int)) error {
	for stage := 0; ; stage++ {
		msgs, done, err := srv.Next()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		stageCtx := ctx
		cancel := func() {}
		if stageTimeout > 0 {
			stageCtx, cancel = context.WithTimeout(ctx, stageTimeout)
		}
		err = x.Exchange(stageCtx, round, stage, msgs, func(id ClientID, reply []byte, err error) {
			if err == nil {
				err = srv.Receive(id, reply)
			}
			if err != nil {
				log.Debug("client dropped from secure sum", "client", id, "stage", stage, "err", err)
				srv.Drop(id)
			}
		})
		cancel()
		if afterStage != nil {
			afterStage(stage)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("secure sum stage %d: %w", stage, ctx.Err())
		}
		if err != nil {
			log.Debug("stage ended early", "stage", stage, "err", err)
		}
	}
}

// stageName names a secure-sum stage for the round's time split ("secagg masked").
func (e *Engine) stageName(stage int) string {
	if names := e.SecureSum.Stages(); stage < len(names) {
		return e.SecureSum.Name() + " " + names[stage]
	}
	return fmt.Sprintf("%s stage %d", e.SecureSum.Name(), stage+1)
}

func validateSecureFit(res FitRes) error {
	if res.Update != nil {
		return fmt.Errorf("%w: client sent its update in the clear during a secure round", ErrBadUpdate)
	}
	if res.NumExamples < 1 {
		return fmt.Errorf("%w: example count %d, must be ≥ 1", ErrBadUpdate, res.NumExamples)
	}
	return nil
}
