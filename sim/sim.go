// Package sim simulates a federation in one process: N virtual clients over a partitioned
// dataset, created lazily for the clients a round samples (a registered client costs only its
// index list), trained on a worker pool, with injectable dropout, stragglers and secure-sum stage
// dropouts. It implements fl.Transport, so the simulator runs the very engine (fl.Engine.Run) a
// deployment runs; the virtual clients are trainer.Clients, shuffled and weighted by the same
// rules as a network client.
//
// sim depends on fl, trainer, nn, data and privacy; nothing of Shoal depends on sim but cmd.
package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"shoal/data"
	"shoal/fl"
	"shoal/nn"
	"shoal/privacy"
	"shoal/trainer"
)

// Config sets the simulated population's behaviour.
type Config struct {
	// Workers is the number of clients trained at once (default GOMAXPROCS).
	Workers int
	// Dropout is the probability that a sampled client drops out before uploading its update.
	Dropout float64
	// StragglerFraction of the sampled clients answer StragglerDelay late.
	StragglerFraction float64
	StragglerDelay    time.Duration
	// Seed makes training shuffles, dropouts and stragglers reproducible.
	Seed uint64
	// SecureSum, when the engine runs one, creates each client's half of the protocol.
	SecureSum fl.SecureSum
	// StageDropout is the probability that a client still in the secure-sum protocol drops out
	// at stage DropStage (0-based index into SecureSum.Stages()).
	StageDropout float64
	DropStage    int
	// SeededNoise derives client-side DP noise from Seed (reproducible, for --seed runs only);
	// otherwise every client's noise comes from crypto/rand.
	SeededNoise bool
	// Fault, if set, may corrupt or fail a client's result (tests and fault injection).
	Fault func(id fl.ClientID, res *fl.FitRes) error
	// NewClient, when set, replaces the built-in trainer.Client (an external trainer: package
	// trainer/process): worker w (0 ≤ w < Workers) calls it once, at New, for the factory that
	// makes its virtual clients; a factory is used by one goroutine at a time.
	NewClient func(worker int) (ClientFactory, error)
}

// VirtualClient is what a ClientFactory knows of the client it makes: its id, the round (0 for
// evaluation), its example indices into the federation's training and test sets (Test nil: no
// local test data), and its local-noise source (nil: crypto/rand).
type VirtualClient struct {
	ID          fl.ClientID
	Round       int
	Train, Test []int
	Noise       *privacy.Source
}

// ClientFactory makes the fl.Client for one task of a virtual client.
type ClientFactory func(VirtualClient) fl.Client

// Simulation is a federation of virtual clients; it implements fl.Transport.
type Simulation struct {
	cfg   Config
	proto *nn.Model
	fed   *data.Federated
	pool  chan *worker

	mu         sync.Mutex
	sumRound   int
	sumClients map[fl.ClientID]fl.SumClient // the current round's protocol halves
}

type worker struct {
	newClient ClientFactory // nil: trainer.Client on model
	model     *nn.Model
	x, tx     []float32
	y, ty     []int32
}

var _ fl.Transport = (*Simulation)(nil)

// New builds a simulation of len(fed.Clients) clients training copies of proto.
func New(proto *nn.Model, fed *data.Federated, cfg Config) (*Simulation, error) {
	if proto == nil || fed == nil || fed.Train == nil {
		return nil, fmt.Errorf("simulation needs a model and a partitioned training set")
	}
	if len(fed.Clients) == 0 {
		return nil, fmt.Errorf("simulation needs at least one client")
	}
	if cfg.Dropout < 0 || cfg.Dropout >= 1 {
		return nil, fmt.Errorf("dropout probability must be in [0, 1), got %v", cfg.Dropout)
	}
	if cfg.StragglerFraction < 0 || cfg.StragglerFraction > 1 || cfg.StragglerDelay < 0 {
		return nil, fmt.Errorf("straggler fraction must be in [0, 1] and delay ≥ 0")
	}
	if cfg.StageDropout < 0 || cfg.StageDropout >= 1 {
		return nil, fmt.Errorf("stage dropout probability must be in [0, 1), got %v", cfg.StageDropout)
	}
	if cfg.SecureSum != nil && (cfg.DropStage < 0 || cfg.DropStage >= len(cfg.SecureSum.Stages())) {
		return nil, fmt.Errorf("dropout stage %d: %s has stages 0..%d (%v)", cfg.DropStage, cfg.SecureSum.Name(),
			len(cfg.SecureSum.Stages())-1, cfg.SecureSum.Stages())
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	s := &Simulation{cfg: cfg, proto: proto, fed: fed, pool: make(chan *worker, cfg.Workers)}
	for i := range cfg.Workers {
		w := &worker{}
		if cfg.NewClient == nil {
			w.model = proto.Clone() // only the built-in trainer trains on the worker's copy
		} else {
			var err error
			if w.newClient, err = cfg.NewClient(i); err != nil {
				return nil, fmt.Errorf("worker %d: %w", i, err)
			}
		}
		s.pool <- w
	}
	return s, nil
}

// NumClients is the number of registered virtual clients.
func (s *Simulation) NumClients() int { return len(s.fed.Clients) }

// fitClient materialises virtual client id with its training data on worker w's model and
// buffers. Its seeded noise source is made only when the round asks for local noise.
func (s *Simulation) fitClient(w *worker, id fl.ClientID, ins fl.FitIns) fl.Client {
	var noise *privacy.Source
	if s.cfg.SeededNoise && ins.Config.LocalNoiseStd > 0 {
		noise = privacy.NewSeededSource(s.cfg.Seed ^ uint64(ins.Round)<<32 ^ uint64(id)*0x9e3779b97f4a7c15)
	}
	if w.newClient != nil {
		return w.newClient(VirtualClient{ID: id, Round: ins.Round, Train: s.fed.Clients[id], Noise: noise})
	}
	w.x, w.y = s.fed.Train.Gather(s.fed.Clients[id], w.x, w.y)
	return &trainer.Client{Model: w.model, X: w.x, Y: w.y, Rand: trainer.ShuffleRand(s.cfg.Seed, ins.Round, id), NoiseSource: noise}
}

// evalClient materialises virtual client id with its local test data only.
func (s *Simulation) evalClient(w *worker, id fl.ClientID) fl.Client {
	if w.newClient != nil {
		vc := VirtualClient{ID: id}
		if s.fed.Test != nil && int(id) < len(s.fed.TestClients) {
			vc.Test = s.fed.TestClients[id]
		}
		return w.newClient(vc)
	}
	c := &trainer.Client{Model: w.model}
	if s.fed.Test != nil && s.fed.TestClients != nil && int(id) < len(s.fed.TestClients) {
		w.tx, w.ty = s.fed.Test.Gather(s.fed.TestClients[id], w.tx, w.ty)
		c.TestX, c.TestY = w.tx, w.ty
	}
	return c
}

// fate is what the simulation decided, before the round, a sampled client will do.
type fate struct {
	drop  bool
	delay time.Duration
}

func (s *Simulation) fates(round int, cohort []fl.ClientID) []fate {
	rng := rand.New(rand.NewPCG(s.cfg.Seed^0xd209, uint64(round)))
	out := make([]fate, len(cohort))
	for i := range cohort {
		out[i].drop = rng.Float64() < s.cfg.Dropout
		if rng.Float64() < s.cfg.StragglerFraction {
			out[i].delay = s.cfg.StragglerDelay
		}
	}
	return out
}

// Fit trains the cohort on the worker pool and delivers each outcome as it completes. In a
// secure round each client keeps its update in its half of the protocol and reports only its
// example count and loss.
func (s *Simulation) Fit(ctx context.Context, cohort []fl.ClientID, ins fl.FitIns, deliver func(fl.FitOutcome)) error {
	if ins.Secure {
		if s.cfg.SecureSum == nil {
			return fmt.Errorf("secure round requested, but the simulation has no secure-sum protocol")
		}
		s.mu.Lock()
		s.sumRound, s.sumClients = ins.Round, make(map[fl.ClientID]fl.SumClient, len(cohort))
		s.mu.Unlock()
	}
	return runCohort(ctx, s, cohort, ins.Round, deliver,
		func(o fl.FitOutcome) fl.ClientID { return o.Client },
		func(id fl.ClientID, err error) fl.FitOutcome { return fl.FitOutcome{Client: id, Err: err} },
		func(w *worker, id fl.ClientID) fl.FitOutcome {
			res, err := s.fitClient(w, id, ins).Fit(ctx, ins)
			if err == nil && s.cfg.Fault != nil {
				err = s.cfg.Fault(id, &res)
			}
			if err == nil && ins.Secure {
				err = s.holdInput(ins, id, &res)
			}
			return fl.FitOutcome{Client: id, Res: res, Err: err}
		})
}

// holdInput moves a client's update into its half of the secure-sum protocol.
func (s *Simulation) holdInput(ins fl.FitIns, id fl.ClientID, res *fl.FitRes) error {
	in := fl.SumInput{Update: res.Update, Weight: ins.Config.Weight(res.NumExamples), Unclipped: res.Unclipped}
	c, err := s.cfg.SecureSum.NewClient(ins.Round, id, in)
	if err != nil {
		return fmt.Errorf("secure sum input: %w", err)
	}
	res.Update = nil
	s.mu.Lock()
	s.sumClients[id] = c
	s.mu.Unlock()
	return nil
}

// Exchange delivers one secure-sum stage to the clients' protocol halves, in parallel on the
// worker pool, dropping clients as configured for that stage.
func (s *Simulation) Exchange(ctx context.Context, round, stage int, msgs map[fl.ClientID][]byte, deliver func(fl.ClientID, []byte, error)) error {
	if s.cfg.SecureSum == nil {
		return fmt.Errorf("exchange in round %d, but the simulation has no secure-sum protocol", round)
	}
	s.mu.Lock()
	if s.sumRound != round || s.sumClients == nil {
		// A round without a fit stage of its own (the setup, round 0).
		s.sumRound, s.sumClients = round, make(map[fl.ClientID]fl.SumClient)
	}
	// Clients addressed without an input of their own this round (committee members not
	// sampled, setup participants) get an empty-input half.
	for id := range msgs {
		if _, ok := s.sumClients[id]; !ok {
			c, err := s.cfg.SecureSum.NewClient(round, id, fl.SumInput{})
			if err != nil {
				s.mu.Unlock()
				return fmt.Errorf("client %d protocol half: %w", id, err)
			}
			s.sumClients[id] = c
		}
	}
	clients := s.sumClients
	s.mu.Unlock()
	ids := make([]fl.ClientID, 0, len(msgs))
	for id := range msgs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	drop := make(map[fl.ClientID]bool)
	if s.cfg.StageDropout > 0 && stage == s.cfg.DropStage {
		rng := rand.New(rand.NewPCG(s.cfg.Seed^0x57a9e, uint64(round)<<8|uint64(stage)))
		for _, id := range ids {
			drop[id] = rng.Float64() < s.cfg.StageDropout
		}
	}
	type reply struct {
		id  fl.ClientID
		msg []byte
		err error
	}
	replies := make(chan reply, len(ids))
	jobs := make(chan fl.ClientID)
	var wg sync.WaitGroup
	for range min(s.cfg.Workers, max(1, len(ids))) {
		wg.Go(func() {
			for id := range jobs {
				c, ok := clients[id]
				if !ok {
					replies <- reply{id, nil, fmt.Errorf("client %d holds no input for round %d", id, round)}
					continue
				}
				msg, err := fl.HandleSafely(c, msgs[id])
				replies <- reply{id, msg, err}
			}
		})
	}
	pending := 0
	go func() {
		defer close(jobs)
		for _, id := range ids {
			if drop[id] {
				continue
			}
			select {
			case jobs <- id:
			case <-ctx.Done():
				return
			}
		}
	}()
	for _, id := range ids {
		if drop[id] {
			deliver(id, nil, fl.ErrDropped)
		} else {
			pending++
		}
	}
	answered := map[fl.ClientID]bool{}
	var err error
collect:
	for ; pending > 0; pending-- {
		select {
		case r := <-replies:
			answered[r.id] = true
			deliver(r.id, r.msg, r.err)
		case <-ctx.Done():
			err = ctx.Err()
			break collect
		}
	}
	wg.Wait()
	for _, id := range ids {
		if !drop[id] && !answered[id] {
			deliver(id, nil, fmt.Errorf("%w: %v", fl.ErrTimeout, err))
		}
	}
	return err
}

// Evaluate scores params on each cohort member's local test data.
func (s *Simulation) Evaluate(ctx context.Context, cohort []fl.ClientID, params []float32, deliver func(fl.EvalOutcome)) error {
	return runCohort(ctx, s, cohort, 0, deliver,
		func(o fl.EvalOutcome) fl.ClientID { return o.Client },
		func(id fl.ClientID, err error) fl.EvalOutcome { return fl.EvalOutcome{Client: id, Err: err} },
		func(w *worker, id fl.ClientID) fl.EvalOutcome {
			res, err := s.evalClient(w, id).Evaluate(ctx, params)
			return fl.EvalOutcome{Client: id, Res: res, Err: err}
		})
}

// runCohort runs work for every cohort member on the worker pool, applying the simulated fates
// (round > 0) and ctx's deadline, and delivers outcomes one at a time. It returns only after
// every worker has finished with the round's inputs.
func runCohort[O any](ctx context.Context, s *Simulation, cohort []fl.ClientID, round int, deliver func(O),
	idOf func(O) fl.ClientID, failed func(fl.ClientID, error) O, work func(*worker, fl.ClientID) O) error {
	var fates []fate
	if round > 0 {
		fates = s.fates(round, cohort)
	} else {
		fates = make([]fate, len(cohort))
	}
	results := make(chan O, len(cohort))
	jobs := make(chan int)
	pending := make(map[fl.ClientID]bool, len(cohort))
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() {
			w := <-s.pool
			defer func() { s.pool <- w }()
			for i := range jobs {
				out := safely(w, cohort[i], work, failed)
				if d := fates[i].delay; d > 0 {
					wg.Go(func() {
						t := time.NewTimer(d)
						defer t.Stop()
						select {
						case <-t.C:
							results <- out
						case <-ctx.Done():
						}
					})
					continue
				}
				results <- out
			}
		})
	}
	for i, id := range cohort {
		if fates[i].drop {
			deliver(failed(id, fl.ErrDropped))
			continue
		}
		pending[id] = true
	}
	go func() {
		defer close(jobs)
		for i := range cohort {
			if fates[i].drop {
				continue
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var err error
collect:
	for len(pending) > 0 {
		select {
		case o := <-results:
			delete(pending, idOf(o))
			deliver(o)
		case <-ctx.Done():
			err = ctx.Err()
			break collect
		}
	}
	wg.Wait()
	for _, id := range cohort {
		if pending[id] {
			deliver(failed(id, fmt.Errorf("%w: %v", fl.ErrTimeout, err)))
		}
	}
	return err
}

// safely runs work and turns a panic inside one client's code into that client's failure, so
// one broken client never takes the simulated server down.
func safely[O any](w *worker, id fl.ClientID, work func(*worker, fl.ClientID) O, failed func(fl.ClientID, error) O) (out O) {
	defer func() {
		if r := recover(); r != nil {
			out = failed(id, fmt.Errorf("client %d crashed: %v", id, r))
		}
	}()
	return work(w, id)
}
