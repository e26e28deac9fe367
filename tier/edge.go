package tier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/fl"
	tierv1 "shoal/proto/shoal/tier/v1"
	shoalv1 "shoal/proto/shoal/v1"
	"shoal/securesum"
	"shoal/transport/grpctransport"
)

// Edge serves the coordinator's Edge service for the devices connected to one
// grpctransport.Server: it trains the devices the coordinator selects and sums each group
// assigned to it, plainly or with the run's secure-sum protocol, returning only group sums.
type Edge struct {
	tierv1.UnimplementedEdgeServer
	name  string
	srv   *grpctransport.Server
	inner fl.SecureSum // nil: plain sums (the edge sees the group's updates, as a server would)
	// Authorize, if set, refuses callers that are not a coordinator (mutual TLS: by certificate
	// name).
	authorize  func(ctx context.Context) error
	onSumGroup func(round int)
	pacer      *Pacer
	log        *slog.Logger

	mu       sync.Mutex
	term     int64
	fitRound int
	updates  map[fl.ClientID]held // plain rounds: the updates of fitRound until their group is summed
}

type held struct {
	update    []float32
	weight    float64
	unclipped float64
}

// EdgeConfig configures an Edge.
type EdgeConfig struct {
	Name   string
	Server *grpctransport.Server
	// SecureSum is the run's protocol as devices were announced it (nil: plain).
	SecureSum fl.SecureSum
	Authorize func(ctx context.Context) error
	// Pacer, if set, sends each device away for a pace-steering window once its group's sum is
	// done, so that other devices take its place.
	Pacer *Pacer
	// OnSumGroup, if set, is called as a group's sum is asked for (fault injection in tests).
	OnSumGroup func(round int)
	Logger     *slog.Logger
}

// NewEdge returns the Edge service over cfg.Server.
func NewEdge(cfg EdgeConfig) (*Edge, error) {
	if cfg.Server == nil || cfg.Name == "" {
		return nil, errors.New("edge: server and name are required")
	}
	if h, ok := cfg.SecureSum.(*securesum.HE); ok {
		// Threshold HE: each group runs its own key ceremony (hegroup.go), from this server
		// half's options and trust root.
		if _, err := h.NewGroup(0); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	} else if _, ok := cfg.SecureSum.(fl.SecureSumSetup); ok {
		return nil, fmt.Errorf("edge: %s needs a one-time setup across the population; the tier runs HE, SecAgg, SecAgg+ or plain groups", cfg.SecureSum.Name())
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Edge{name: cfg.Name, srv: cfg.Server, inner: cfg.SecureSum, authorize: cfg.Authorize, onSumGroup: cfg.OnSumGroup, pacer: cfg.Pacer, log: log, updates: map[fl.ClientID]held{}}, nil
}

// admit checks the caller and the term: an older coordinator's request is refused (fencing).
func (e *Edge) admit(ctx context.Context, term int64) error {
	if e.authorize != nil {
		if err := e.authorize(ctx); err != nil {
			return status.Errorf(codes.PermissionDenied, "edge %s: %v", e.name, err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if term < e.term {
		return status.Errorf(codes.FailedPrecondition, "edge %s: term %d is older than term %d: a newer coordinator leads", e.name, term, e.term)
	}
	if term > e.term {
		if e.term != 0 {
			e.log.Info("new coordinator term", "term", term, "was", e.term)
		}
		e.term = term
	}
	return nil
}

// Roster offers the connected devices for the next round.
func (e *Edge) Roster(ctx context.Context, req *tierv1.RosterRequest) (*tierv1.RosterReply, error) {
	if err := e.admit(ctx, req.GetTerm()); err != nil {
		return nil, err
	}
	if req.GetCountOnly() {
		return &tierv1.RosterReply{Edge: e.name, Connected: uint32(len(e.srv.Connected()))}, nil
	}
	ids := e.srv.Roster()
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return &tierv1.RosterReply{Edge: e.name, Devices: out}, nil
}

// Fit trains the selected devices and streams each one's outcome; a plain round's updates stay
// here until their group is summed.
func (e *Edge) Fit(req *tierv1.FitRequest, stream tierv1.Edge_FitServer) error {
	ctx := stream.Context()
	if err := e.admit(ctx, req.GetTerm()); err != nil {
		return err
	}
	params, err := decodeFloats32(req.GetParams())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "params: %v", err)
	}
	round := int(req.GetRound())
	cfg := fitConfigFrom(req.GetConfig())
	if err := cfg.Validate(); err != nil {
		return status.Errorf(codes.InvalidArgument, "fit configuration: %v", err)
	}
	secure := e.inner != nil
	if req.GetSecure() != secure {
		return status.Errorf(codes.FailedPrecondition, "edge %s runs %s sums, the coordinator asked secure=%v", e.name, e.sumName(), req.GetSecure())
	}
	e.mu.Lock()
	if round != e.fitRound {
		e.fitRound, e.updates = round, map[fl.ClientID]held{}
	}
	e.mu.Unlock()
	cohort := make([]fl.ClientID, len(req.GetDevices()))
	for i, d := range req.GetDevices() {
		cohort[i] = fl.ClientID(d)
	}
	ins := fl.FitIns{Round: round, Params: params, Config: cfg, Secure: secure}
	var sendErr error
	err = e.srv.Fit(ctx, cohort, ins, func(o fl.FitOutcome) {
		if o.Err == nil {
			o.Err = e.keep(round, o, cfg, len(params))
		}
		out := &tierv1.DeviceOutcome{Device: int64(o.Client)}
		if o.Err != nil {
			out.Error = o.Err.Error()
		} else {
			out.NumExamples, out.Loss, out.Unclipped = int64(o.Res.NumExamples), o.Res.Loss, o.Res.Unclipped
		}
		if sendErr == nil {
			sendErr = stream.Send(out)
		}
	})
	if sendErr != nil {
		return sendErr
	}
	if err != nil && ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return nil
}

// keep validates a device's answer and holds a plain update for its group's sum.
func (e *Edge) keep(round int, o fl.FitOutcome, cfg fl.FitConfig, dim int) error {
	if e.inner != nil {
		if o.Res.Update != nil {
			return fmt.Errorf("%w: update in the clear during a secure round", fl.ErrBadUpdate)
		}
		if o.Res.NumExamples < 1 {
			return fmt.Errorf("%w: example count %d", fl.ErrBadUpdate, o.Res.NumExamples)
		}
		return nil
	}
	if err := fl.ValidateUpdate(o.Res, dim); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fitRound != round {
		return fmt.Errorf("round %d superseded by round %d", round, e.fitRound)
	}
	e.updates[o.Client] = held{update: o.Res.Update, weight: cfg.Weight(o.Res.NumExamples), unclipped: o.Res.Unclipped}
	return nil
}

func (e *Edge) sumName() string {
	if e.inner == nil {
		return "plain"
	}
	return e.inner.Name()
}

// SumGroup sums one group's holders and returns only the group's sum.
func (e *Edge) SumGroup(ctx context.Context, req *tierv1.SumGroupRequest) (*tierv1.SumGroupReply, error) {
	if err := e.admit(ctx, req.GetTerm()); err != nil {
		return nil, err
	}
	if e.onSumGroup != nil {
		e.onSumGroup(int(req.GetRound()))
	}
	holders := make([]fl.ClientID, len(req.GetHolders()))
	for i, h := range req.GetHolders() {
		holders[i] = fl.ClientID(h)
	}
	dim, round := int(req.GetDim()), int(req.GetRound())
	if dim < 1 || len(holders) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "group of %d holders, dimension %d", len(holders), dim)
	}
	var res fl.SumResult
	var err error
	if e.inner == nil {
		res, err = e.plainSum(round, holders, dim)
	} else {
		res, err = e.secureSum(ctx, req, holders)
	}
	if err != nil {
		e.log.Warn("group lost", "round", round, "group", req.GetGroup(), "err", err)
		return nil, status.Errorf(codes.Aborted, "group %d of round %d: %v", req.GetGroup(), round, err)
	}
	if len(res.Sum) != dim {
		return nil, status.Errorf(codes.Internal, "group sum of %d coordinates, want %d", len(res.Sum), dim)
	}
	e.log.Debug("group summed", "round", round, "group", req.GetGroup(), "count", res.Count)
	e.dismiss(holders)
	return &tierv1.SumGroupReply{Sum: encodeFloats64(res.Sum), Weight: res.Weight, Unclipped: res.Unclipped, Count: int64(res.Count)}, nil
}

// dismiss sends the group's devices away for a pace-steering window each.
func (e *Edge) dismiss(holders []fl.ClientID) {
	if e.pacer == nil {
		return
	}
	for _, h := range holders {
		if d := e.pacer.Window(); d > 0 {
			e.srv.Dismiss(h, d)
		}
	}
}

func (e *Edge) plainSum(round int, holders []fl.ClientID, dim int) (fl.SumResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fitRound != round {
		return fl.SumResult{}, fmt.Errorf("this edge holds round %d's updates, not round %d's", e.fitRound, round)
	}
	res := fl.SumResult{Sum: make([]float64, dim)}
	for _, h := range holders {
		u, ok := e.updates[h]
		if !ok {
			continue // not trained here (the coordinator's view is stale): left out
		}
		fl.AddScaled(res.Sum, u.update, u.weight)
		res.Weight += u.weight
		res.Unclipped += u.unclipped
		res.Count++
		delete(e.updates, h)
	}
	if res.Count == 0 {
		return res, errors.New("none of the group's devices holds an update here")
	}
	return res, nil
}

// secureSum runs the group's secure sum with its devices, stage by stage, with the engine's own
// stage driver; under threshold HE the group's key ceremony comes first.
func (e *Edge) secureSum(ctx context.Context, req *tierv1.SumGroupRequest, holders []fl.ClientID) (fl.SumResult, error) {
	if h, ok := e.inner.(*securesum.HE); ok {
		return e.heGroupSum(ctx, h, req, holders)
	}
	round := int(req.GetRound())
	srv, err := e.floored(req, holders)
	if err != nil {
		return fl.SumResult{}, err
	}
	if err := fl.DriveSecureSum(ctx, e.srv, round, srv, stageTimeout(req), e.log.With("round", round), nil); err != nil {
		return fl.SumResult{}, err
	}
	return srv.Result()
}

// floored starts a SecAgg/SecAgg+ group's server half, held to the request's min_group: the
// coordinator refuses a group sum of fewer devices, and the edge must not learn one either.
func (e *Edge) floored(req *tierv1.SumGroupRequest, holders []fl.ClientID) (fl.SumServer, error) {
	round, minGroup := int(req.GetRound()), int(req.GetMinGroup())
	if len(holders) < minGroup {
		return nil, fmt.Errorf("%w: %d holders, fewer than the minimum group of %d", fl.ErrRoundAbandoned, len(holders), minGroup)
	}
	masked := slices.Index(e.inner.Stages(), "masked")
	if minGroup > 0 && masked < 0 {
		return nil, fmt.Errorf("%s has no masked-input stage: the edge cannot hold its sums to the minimum group of %d", e.inner.Name(), minGroup)
	}
	srv, err := e.inner.NewServer(round, holders, int(req.GetDim()), req.GetMaxWeight())
	if err != nil || minGroup <= 0 {
		return srv, err
	}
	return &minGroupSum{SumServer: srv, minGroup: minGroup, masked: masked, stage: -1}, nil
}

// minGroupSum abandons a SecAgg/SecAgg+ group before its unmasking stage when fewer than
// minGroup masked inputs arrived. The protocol itself unmasks any t survivors (its Shamir
// threshold, sized for dropouts): a group below min_group would show the edge the sum of fewer
// devices than the run promises, though the coordinator then refuses that sum. Abandoned before
// unmasking, the masked inputs stay masked: no device is asked for the shares that remove them.
type minGroupSum struct {
	fl.SumServer
	minGroup int
	masked   int // index of the masked-input stage among the protocol's stages
	stage    int // the stage whose replies are being received (-1 before the first)
	got      map[fl.ClientID]bool
}

func (m *minGroupSum) Next() (map[fl.ClientID][]byte, bool, error) {
	if m.stage == m.masked && len(m.got) < m.minGroup {
		return nil, false, fmt.Errorf("%w: %d masked inputs, fewer than the minimum group of %d; nothing unmasked",
			fl.ErrRoundAbandoned, len(m.got), m.minGroup)
	}
	msgs, done, err := m.SumServer.Next()
	m.stage++
	m.got = map[fl.ClientID]bool{}
	return msgs, done, err
}

func (m *minGroupSum) Receive(from fl.ClientID, msg []byte) error {
	err := m.SumServer.Receive(from, msg)
	if err == nil {
		m.got[from] = true
	}
	return err
}

func (m *minGroupSum) Drop(id fl.ClientID) {
	delete(m.got, id)
	m.SumServer.Drop(id)
}

func stageTimeout(req *tierv1.SumGroupRequest) time.Duration {
	return time.Duration(req.GetStageTimeoutMillis()) * time.Millisecond
}

func fitConfigFrom(c *shoalv1.FitConfig) fl.FitConfig {
	return fl.FitConfig{
		Epochs: int(c.GetEpochs()), BatchSize: int(c.GetBatchSize()), LR: c.GetLr(), Momentum: c.GetMomentum(),
		WeightDecay: c.GetWeightDecay(), ProxMu: c.GetProxMu(), ClipNorm: c.GetClipNorm(), PerLayerClip: c.GetPerLayerClip(),
		LocalNoiseStd: c.GetLocalNoiseStd(), UnitWeights: c.GetUnitWeights(),
	}
}

func fitConfigProto(c fl.FitConfig) *shoalv1.FitConfig {
	return &shoalv1.FitConfig{
		Epochs: uint32(c.Epochs), BatchSize: uint32(c.BatchSize), Lr: c.LR, Momentum: c.Momentum,
		WeightDecay: c.WeightDecay, ProxMu: c.ProxMu, ClipNorm: c.ClipNorm, PerLayerClip: c.PerLayerClip,
		LocalNoiseStd: c.LocalNoiseStd, UnitWeights: c.UnitWeights,
	}
}

func encodeFloats32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func decodeFloats32(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of float32", len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

func encodeFloats64(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

func decodeFloats64(b []byte) ([]float64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of float64", len(b))
	}
	v := make([]float64, len(b)/8)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return v, nil
}

// Describe names the sums this edge runs for its groups.
func (e *Edge) Describe() string { return e.sumName() + " group sums" }
