package tier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"

	"shoal/fl"
	tierv1 "shoal/proto/shoal/tier/v1"
)

// CoordinatorConfig configures the coordinator's Transport.
type CoordinatorConfig struct {
	// Term is the coordinator's election term (Leadership.Term): every request carries it.
	Term    int64
	Members *Members
	// Dial connects to an edge's Edge service (mutual TLS in a deployment).
	Dial func(addr string) (*grpc.ClientConn, error)
	// MinGroup is the fewest devices an aggregation group may have: a group's secure sum among
	// fewer hides each device in too small a crowd. An edge holding fewer of a round's cohort
	// contributes nothing that round. Groups are never split across edges.
	MinGroup int
	// StageTimeout bounds each stage of a group's secure sum on its edge.
	StageTimeout time.Duration
	// Secure says that groups run a secure sum on their edges (devices keep their updates): it
	// must match the edges' protocol, announced to devices from the run record.
	Secure bool
	// RosterTimeout bounds the question "which devices do you hold?" to each edge (default 3 s);
	// an edge that does not answer in time offers none that round.
	RosterTimeout time.Duration
	Logger        *slog.Logger
}

// Coordinator is the engine's Transport across the population's edges. Client ids are indices
// into the roster NumClients takes before each round: every edge's connected devices, edges in
// name order, devices in each edge's id order.
type Coordinator struct {
	cfg CoordinatorConfig
	log *slog.Logger

	mu       sync.Mutex
	conns    map[string]*edgeConn
	snapshot []device
	rounds   map[int]*roundPlan
	needed   map[int]int
}

type edgeConn struct {
	addr string
	conn *grpc.ClientConn
	api  tierv1.EdgeClient
}

// device is one device of a roster: the edge holding it and its id there.
type device struct {
	edge string
	id   int64
}

// roundPlan is one round's roster and groups.
type roundPlan struct {
	roster  []device
	groups  []*group
	groupOf map[fl.ClientID]*group
	clip    float64 // the norm every device's update was clipped to (0: none, or noised after)
}

type group struct {
	edge    string
	index   int
	members []fl.ClientID
}

var _ fl.Transport = (*Coordinator)(nil)

// NewCoordinator returns the coordinator's transport.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	switch {
	case cfg.Members == nil || cfg.Dial == nil:
		return nil, errors.New("coordinator: membership and dialer are required")
	case cfg.MinGroup < 1:
		return nil, fmt.Errorf("coordinator: minimum group size %d, want ≥ 1", cfg.MinGroup)
	}
	if cfg.RosterTimeout <= 0 {
		cfg.RosterTimeout = 3 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Coordinator{cfg: cfg, log: log, conns: map[string]*edgeConn{}, rounds: map[int]*roundPlan{}, needed: map[int]int{}}, nil
}

// Close closes the connections to the edges.
func (c *Coordinator) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n, e := range c.conns {
		e.conn.Close()
		delete(c.conns, n)
	}
}

func (c *Coordinator) edge(info EdgeInfo) (tierv1.EdgeClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.conns[info.Name]; ok && e.addr == info.Addr {
		return e.api, nil
	} else if ok {
		e.conn.Close()
	}
	conn, err := c.cfg.Dial(info.Addr)
	if err != nil {
		return nil, fmt.Errorf("edge %s at %s: %w", info.Name, info.Addr, err)
	}
	e := &edgeConn{addr: info.Addr, conn: conn, api: tierv1.NewEdgeClient(conn)}
	c.conns[info.Name] = e
	return e.api, nil
}

func (c *Coordinator) edgeByName(name string) (tierv1.EdgeClient, error) {
	for _, e := range c.cfg.Members.Edges() {
		if e.Name == name {
			return c.edge(e)
		}
	}
	return nil, fmt.Errorf("edge %s is no longer registered", name)
}

// Edges counts the registered edges.
func (c *Coordinator) Edges() int { return len(c.cfg.Members.Edges()) }

// Connected counts the devices the edges hold now, without fixing a roster: selection polls it
// while devices arrive, and the edges give ids only when a round takes its roster (then in the
// natural order of the names connected, the same in every run of the same devices).
func (c *Coordinator) Connected(ctx context.Context) int {
	n := 0
	for _, r := range c.ask(ctx, true) {
		n += int(r.GetConnected())
	}
	return n
}

// rosters asks every registered edge for its devices, in parallel.
func (c *Coordinator) rosters(ctx context.Context) []device {
	var all []device
	for _, r := range c.ask(ctx, false) {
		for _, id := range r.GetDevices() {
			all = append(all, device{edge: r.GetEdge(), id: id})
		}
	}
	return all
}

// ask sends a Roster request to every registered edge in parallel; the replies come in edge
// order, without those of edges that did not answer.
func (c *Coordinator) ask(ctx context.Context, countOnly bool) []*tierv1.RosterReply {
	edges := c.cfg.Members.Edges()
	replies := make([]*tierv1.RosterReply, len(edges))
	var wg sync.WaitGroup
	for i, info := range edges {
		wg.Go(func() {
			api, err := c.edge(info)
			if err != nil {
				c.log.Warn("edge unreachable", "edge", info.Name, "err", err)
				return
			}
			rctx, cancel := context.WithTimeout(ctx, c.cfg.RosterTimeout)
			defer cancel()
			r, err := api.Roster(rctx, &tierv1.RosterRequest{Term: c.cfg.Term, CountOnly: countOnly})
			if err != nil {
				c.log.Warn("edge offers no devices", "edge", info.Name, "err", err)
				return
			}
			r.Edge = info.Name
			replies[i] = r
		})
	}
	wg.Wait()
	return slices.DeleteFunc(replies, func(r *tierv1.RosterReply) bool { return r == nil })
}

// NumClients takes the next round's roster from the edges and returns its size.
func (c *Coordinator) NumClients() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.cfg.RosterTimeout)
	defer cancel()
	r := c.rosters(ctx)
	c.mu.Lock()
	c.snapshot = r
	c.mu.Unlock()
	return len(r)
}

// plan fixes round's groups: the cohort's devices on each edge, split into groups of at least
// MinGroup; the devices of an edge holding fewer are returned as left out.
func (c *Coordinator) plan(round int, cohort []fl.ClientID) (*roundPlan, map[fl.ClientID]error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := &roundPlan{roster: c.snapshot, groupOf: map[fl.ClientID]*group{}}
	left := map[fl.ClientID]error{}
	byEdge := map[string][]fl.ClientID{}
	for _, id := range cohort {
		if id < 0 || int(id) >= len(p.roster) {
			left[id] = fmt.Errorf("%w: no such device in the round's roster", fl.ErrDropped)
			continue
		}
		e := p.roster[id].edge
		byEdge[e] = append(byEdge[e], id)
	}
	edges := make([]string, 0, len(byEdge))
	for e := range byEdge {
		edges = append(edges, e)
	}
	sort.Strings(edges)
	for _, e := range edges {
		ids := byEdge[e]
		if len(ids) < c.cfg.MinGroup {
			for _, id := range ids {
				left[id] = fmt.Errorf("%w: edge %s holds %d of the cohort, fewer than the minimum group size %d", fl.ErrDropped, e, len(ids), c.cfg.MinGroup)
			}
			continue
		}
		n := len(ids) / c.cfg.MinGroup // groups of ⌊k/n⌋ or ⌈k/n⌉ ≥ MinGroup devices
		for g := range n {
			gr := &group{edge: e, index: len(p.groups), members: ids[g*len(ids)/n : (g+1)*len(ids)/n]}
			p.groups = append(p.groups, gr)
			for _, id := range gr.members {
				p.groupOf[id] = gr
			}
		}
	}
	c.rounds[round] = p
	for r := range c.rounds {
		if r < round-1 {
			delete(c.rounds, r)
		}
	}
	return p, left
}

// Groups describes round's groups (for the round metadata in etcd).
func (c *Coordinator) Groups(round int) []GroupMeta {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.rounds[round]
	if p == nil {
		return nil
	}
	out := make([]GroupMeta, len(p.groups))
	for i, g := range p.groups {
		out[i] = GroupMeta{Edge: g.edge, Group: g.index, Size: len(g.members)}
	}
	return out
}

type fitResult struct {
	id  fl.ClientID
	res fl.FitRes
	err error
}

// errOverSelected is why a device's answer came after the round had its goal.
var errOverSelected = fmt.Errorf("%w: over-selected, the round already had its goal", fl.ErrDropped)

// Fit trains the cohort through the edges that hold it. With over-selection (GoalSampler) the
// stage ends as soon as the goal has answered; the rest are cancelled.
func (c *Coordinator) Fit(ctx context.Context, cohort []fl.ClientID, ins fl.FitIns, deliver func(fl.FitOutcome)) error {
	p, left := c.plan(ins.Round, cohort)
	if ins.Config.LocalNoiseStd == 0 {
		c.mu.Lock()
		p.clip = float64(ins.Config.ClipNorm)
		c.mu.Unlock()
	}
	for _, id := range cohort {
		if err := left[id]; err != nil {
			deliver(fl.FitOutcome{Client: id, Err: err})
		}
	}
	byEdge := map[string][]fl.ClientID{}
	for _, g := range p.groups {
		byEdge[g.edge] = append(byEdge[g.edge], g.members...)
	}
	selected := len(cohort) - len(left)
	c.mu.Lock()
	need, ok := c.needed[ins.Round]
	c.mu.Unlock()
	if !ok || need > selected {
		need = selected
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan fitResult, selected)
	params := encodeFloats32(ins.Params)
	for e, ids := range byEdge {
		go c.fitEdge(fctx, e, p, ids, ins, params, results)
	}
	good := 0
	for range selected {
		r := <-results
		if good >= need && r.err == nil {
			r.err = errOverSelected
		}
		deliver(fl.FitOutcome{Client: r.id, Res: r.res, Err: r.err})
		if r.err == nil {
			if good++; good == need {
				cancel() // the goal is met: the others are over-selected
			}
		}
	}
	return ctx.Err()
}

// fitEdge runs one edge's share of the fit stage and sends exactly one result per device.
func (c *Coordinator) fitEdge(ctx context.Context, edge string, p *roundPlan, ids []fl.ClientID, ins fl.FitIns, params []byte, results chan<- fitResult) {
	local := make(map[int64]fl.ClientID, len(ids))
	devices := make([]int64, len(ids))
	for i, id := range ids {
		devices[i] = p.roster[id].id
		local[devices[i]] = id
	}
	fail := func(err error) {
		for _, id := range local {
			results <- fitResult{id: id, err: err}
		}
	}
	api, err := c.edgeByName(edge)
	if err != nil {
		fail(fmt.Errorf("%w: %v", fl.ErrDropped, err))
		return
	}
	stream, err := api.Fit(ctx, &tierv1.FitRequest{Term: c.cfg.Term, Round: uint32(ins.Round), Devices: devices,
		Params: params, Config: fitConfigProto(ins.Config), Secure: c.cfg.Secure})
	if err != nil {
		c.log.Warn("edge failed the fit stage", "edge", edge, "err", err)
		fail(fmt.Errorf("%w: edge %s: %v", fl.ErrDropped, edge, err))
		return
	}
	for {
		o, err := stream.Recv()
		if err != nil {
			switch {
			case errors.Is(ctx.Err(), context.Canceled):
				err = errOverSelected
			case ctx.Err() != nil:
				err = fmt.Errorf("%w: %v", fl.ErrTimeout, ctx.Err())
			default:
				if len(local) > 0 {
					c.log.Warn("edge failed the fit stage", "edge", edge, "err", err)
				}
				err = fmt.Errorf("%w: edge %s: %v", fl.ErrDropped, edge, err)
			}
			fail(err)
			return
		}
		id, ok := local[o.GetDevice()]
		if !ok {
			continue // not asked, or answered twice: ignored
		}
		delete(local, o.GetDevice())
		r := fitResult{id: id}
		if o.GetError() != "" {
			r.err = fmt.Errorf("%w: %s", fl.ErrDropped, o.GetError())
		} else {
			r.res = fl.FitRes{NumExamples: clampInt(o.GetNumExamples()), Loss: o.GetLoss(), Unclipped: o.GetUnclipped()}
		}
		results <- r
	}
}

func clampInt(v int64) int {
	if v > math.MaxInt32 || v < 0 {
		return -1 // refused by the engine as an invalid example count
	}
	return int(v)
}

// Evaluate is not offered by the tier: federated evaluation would send the new model to the
// cohort through the edges, which is left for later.
func (c *Coordinator) Evaluate(_ context.Context, cohort []fl.ClientID, _ []float32, deliver func(fl.EvalOutcome)) error {
	for _, id := range cohort {
		deliver(fl.EvalOutcome{Client: id, Err: errors.New("federated evaluation is not available in a tier")})
	}
	return nil
}

// Exchange carries Grouped's one stage: each message, addressed to a group's leader, goes to
// the group's edge as a SumGroup request, and the group's sum comes back as the reply.
func (c *Coordinator) Exchange(ctx context.Context, round, _ int, msgs map[fl.ClientID][]byte, deliver func(fl.ClientID, []byte, error)) error {
	c.mu.Lock()
	p := c.rounds[round]
	c.mu.Unlock()
	type reply struct {
		id  fl.ClientID
		b   []byte
		err error
	}
	replies := make(chan reply, len(msgs))
	for id, msg := range msgs {
		go func() {
			b, err := c.sumGroup(ctx, p, id, msg)
			replies <- reply{id, b, err}
		}()
	}
	for range msgs {
		r := <-replies
		deliver(r.id, r.b, r.err)
	}
	return ctx.Err()
}

func (c *Coordinator) sumGroup(ctx context.Context, p *roundPlan, leader fl.ClientID, msg []byte) ([]byte, error) {
	if p == nil || p.groupOf[leader] == nil {
		return nil, fmt.Errorf("no group led by device %d", leader)
	}
	req, err := decodeSumRequest(msg)
	if err != nil {
		return nil, err
	}
	req.Term = c.cfg.Term
	req.StageTimeoutMillis = uint32(c.cfg.StageTimeout.Milliseconds())
	api, err := c.edgeByName(p.groupOf[leader].edge)
	if err != nil {
		return nil, err
	}
	rep, err := api.SumGroup(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", p.groupOf[leader].edge, err)
	}
	return encodeSumReply(rep)
}

// GoalSampler selects ⌈Over·Goal⌉ of the n devices the edges offer (all of them if fewer),
// uniformly, by reservoir sampling, and tells the coordinator that Goal answers end the fit
// stage (Bonawitz et al. 2019: over-selection by about 30 %, the first to answer are kept).
type GoalSampler struct {
	Goal  int
	Over  float64
	coord *Coordinator
}

// NewGoalSampler validates goal ≥ 1 and over ∈ [1, 10].
func NewGoalSampler(c *Coordinator, goal int, over float64) (*GoalSampler, error) {
	if goal < 1 {
		return nil, fmt.Errorf("goal count %d, want ≥ 1", goal)
	}
	if !(over >= 1 && over <= 10) {
		return nil, fmt.Errorf("over-selection %v, want in [1, 10]", over)
	}
	return &GoalSampler{Goal: goal, Over: over, coord: c}, nil
}

// Target is how many devices a round asks.
func (s *GoalSampler) Target() int { return int(math.Ceil(s.Over*float64(s.Goal) - 1e-9)) }

func (s *GoalSampler) Sample(round, n int, rng *rand.Rand) []fl.ClientID {
	k := min(n, s.Target())
	s.coord.mu.Lock()
	s.coord.needed[round] = min(s.Goal, k)
	s.coord.mu.Unlock()
	return Reservoir(n, k, rng)
}

func (s *GoalSampler) Describe() string {
	return fmt.Sprintf("goal %d per round, over-selected ×%g by reservoir sampling (the first %d answers are kept)", s.Goal, s.Over, s.Goal)
}

// Reservoir draws k of the indices 0…n−1 uniformly without replacement in one pass over the
// stream, skipping ahead geometrically (Li's Algorithm L): O(k·(1 + log(n/k))) draws, so a
// coordinator can select among millions of check-ins without listing them.
func Reservoir(n, k int, rng *rand.Rand) []fl.ClientID {
	if k <= 0 || n <= 0 {
		return nil
	}
	k = min(k, n)
	r := make([]fl.ClientID, k)
	for i := range r {
		r[i] = fl.ClientID(i)
	}
	u := func() float64 { return 1 - rng.Float64() } // in (0, 1]
	w := math.Exp(math.Log(u()) / float64(k))
	for i := k - 1; ; {
		if w >= 1 {
			break
		}
		i += int(math.Floor(math.Log(u())/math.Log1p(-w))) + 1
		if i >= n || i < 0 {
			break
		}
		r[rng.IntN(k)] = fl.ClientID(i)
		w *= math.Exp(math.Log(u()) / float64(k))
	}
	slices.Sort(r)
	return r
}
