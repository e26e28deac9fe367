package tier

import (
	"errors"
	"fmt"
	"log/slog"
	"math"

	"google.golang.org/protobuf/proto"

	"shoal/fl"
	tierv1 "shoal/proto/shoal/tier/v1"
)

// Grouped is the coordinator's secure sum: the master aggregation of Bonawitz et al. Its one
// stage asks every aggregation group's edge for the group's sum (run there plainly or with
// Inner among the group's devices) and adds the group sums up. A group whose edge fails is
// left out; the round goes on with the others, and the engine abandons it only if fewer than
// its minimum results remain. The coordinator never sees a device's update, only group sums.
type Grouped struct {
	// Inner is the protocol each group runs on its edge (nil: a plain sum on the edge).
	Inner fl.SecureSum
	Coord *Coordinator
	Log   *slog.Logger
}

var _ fl.SecureSum = (*Grouped)(nil)

func (g *Grouped) Name() string {
	if g.Inner == nil {
		return "plain groups"
	}
	return g.Inner.Name() + " groups"
}

func (g *Grouped) Describe() string {
	inner := "a plain sum on the edge (the edge sees its group's updates, as a single server would)"
	if g.Inner != nil {
		inner = g.Inner.Describe()
	}
	if _, ok := g.Inner.(fl.SecureSumSetup); ok {
		inner += "; every group runs its own key ceremony each round, its committee drawn at random among the group's devices"
	}
	return fmt.Sprintf("hierarchical: groups of ≥ %d devices per edge, each summed by %s; the coordinator adds group sums",
		g.Coord.cfg.MinGroup, inner)
}

func (g *Grouped) Stages() []string { return []string{"group-sums"} }

func (g *Grouped) Sensitivity(clip float64, dim int) float64 {
	if g.Inner == nil {
		return clip
	}
	return g.Inner.Sensitivity(clip, dim)
}

// NewClient is never called on the coordinator: devices build their halves of Inner from what
// their edge announces.
func (g *Grouped) NewClient(int, fl.ClientID, fl.SumInput) (fl.SumClient, error) {
	return nil, errors.New("grouped sum: devices run the inner protocol with their edge")
}

// NewServer begins the round's master aggregation over the groups the coordinator formed.
func (g *Grouped) NewServer(round int, holders []fl.ClientID, dim int, maxWeight float64) (fl.SumServer, error) {
	g.Coord.mu.Lock()
	p := g.Coord.rounds[round]
	g.Coord.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%w: round %d has no groups", fl.ErrRoundAbandoned, round)
	}
	log := g.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &groupedServer{dim: dim, sum: make([]float64, dim), reqs: map[fl.ClientID]*tierv1.SumGroupRequest{}, log: log,
		minGroup: 1, maxWeight: maxWeight}
	if g.Inner != nil {
		// A secure group's sum is all anyone learns of its devices: it must cover MinGroup of
		// them. (A plain group's edge sees each update anyway; its sum may cover fewer.)
		s.minGroup = g.Coord.cfg.MinGroup
	}
	if a, ok := g.Inner.(interface{ MaxAbsError() float64 }); ok {
		s.slack = a.MaxAbsError() // an approximate sum: its weight carries decryption noise
	}
	if clip := p.clip; clip > 0 && g.Sensitivity(clip, dim) == clip && maxWeight > 0 {
		// An exact sum (plain, or threshold HE up to its decryption error) of updates clipped to
		// clip: its norm is at most count·maxWeight·clip. (SecAgg's quantised sums are bounded
		// by its own ring.)
		s.clip = clip
	}
	for _, h := range holders {
		gr := p.groupOf[h]
		if gr == nil {
			continue
		}
		leader := gr.members[0]
		req := s.reqs[leader]
		if req == nil {
			req = &tierv1.SumGroupRequest{Round: uint32(round), Group: uint32(gr.index), MaxWeight: maxWeight, Dim: uint32(dim),
				MinGroup: uint32(s.minGroup)}
			s.reqs[leader] = req
		}
		req.Holders = append(req.Holders, p.roster[h].id)
	}
	for leader, req := range s.reqs {
		if len(req.Holders) < s.minGroup {
			// Too few of the group trained: its secure sum would show the coordinator an
			// update or two, so the group is left out of the round.
			delete(s.reqs, leader)
			s.log.Warn("aggregation group left out: too few holders", "group", req.GetGroup(), "holders", len(req.Holders), "min", s.minGroup)
		}
	}
	return s, nil
}

type groupedServer struct {
	dim       int
	minGroup  int     // fewest devices a group sum may cover (secure groups: MinGroup)
	maxWeight float64 // largest weight of one device
	slack     float64 // absolute error each decrypted value of a group's sum may carry (threshold HE)
	clip      float64 // bound on each device's update norm, when the group's sum is exact (0: none)
	reqs      map[fl.ClientID]*tierv1.SumGroupRequest
	asked     bool
	sum       []float64
	res       fl.SumResult
	groups    int
	lost      int
	log       *slog.Logger
}

func (s *groupedServer) Next() (map[fl.ClientID][]byte, bool, error) {
	if s.asked {
		return nil, true, nil
	}
	s.asked = true
	if len(s.reqs) == 0 {
		return nil, false, fmt.Errorf("%w: no group has a device holding an update", fl.ErrRoundAbandoned)
	}
	msgs := make(map[fl.ClientID][]byte, len(s.reqs))
	for leader, req := range s.reqs {
		b, err := proto.Marshal(req)
		if err != nil {
			return nil, false, err
		}
		msgs[leader] = b
	}
	return msgs, false, nil
}

func (s *groupedServer) Receive(from fl.ClientID, msg []byte) error {
	req := s.reqs[from]
	if req == nil {
		return fmt.Errorf("group sum from %d, who leads no group", from)
	}
	var rep tierv1.SumGroupReply
	if err := proto.Unmarshal(msg, &rep); err != nil {
		return fmt.Errorf("group %d: %w", req.GetGroup(), err)
	}
	sum, err := decodeFloats64(rep.GetSum())
	switch {
	case err != nil:
		return fmt.Errorf("group %d: %w", req.GetGroup(), err)
	case len(sum) != s.dim:
		return fmt.Errorf("group %d: sum of %d coordinates, want %d", req.GetGroup(), len(sum), s.dim)
	case rep.GetCount() < int64(max(s.minGroup, 1)) || rep.GetCount() > int64(len(req.GetHolders())):
		return fmt.Errorf("group %d: count %d of %d holders (minimum group %d)", req.GetGroup(), rep.GetCount(), len(req.GetHolders()), s.minGroup)
	case !(rep.GetWeight() > 0) || s.maxWeight > 0 && rep.GetWeight() > float64(rep.GetCount())*s.maxWeight*(1+1e-9)+s.slack:
		// Each device weighs at most maxWeight: a larger group weight would let one edge
		// outweigh every other group of the round.
		return fmt.Errorf("group %d: weight %v of %d devices, each at most %v", req.GetGroup(), rep.GetWeight(), rep.GetCount(), s.maxWeight)
	case math.IsInf(rep.GetWeight(), 0) || math.IsNaN(rep.GetUnclipped()) || math.IsInf(rep.GetUnclipped(), 0):
		// (the unclipped count is clamped below; only a non-finite one is refused)
		return fmt.Errorf("group %d: weight %v, unclipped %v", req.GetGroup(), rep.GetWeight(), rep.GetUnclipped())
	}
	norm2 := 0.0
	for i, v := range sum {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("group %d: coordinate %d is %v", req.GetGroup(), i, v)
		}
		norm2 += v * v
	}
	// Under threshold HE a device encrypts whatever it likes (no range check, unlike SecAgg's
	// ring): one update of 10⁹ would make the group's sum, and the model, its own.
	if bound := float64(rep.GetCount())*s.maxWeight*s.clip*(1+1e-6) + s.slack*math.Sqrt(float64(s.dim)); s.clip > 0 && math.Sqrt(norm2) > bound {
		return fmt.Errorf("group %d: sum of norm %v, above the %v that %d updates clipped to %v and weighing at most %v can add up to",
			req.GetGroup(), math.Sqrt(norm2), bound, rep.GetCount(), s.clip, s.maxWeight)
	}
	for i, v := range sum {
		s.sum[i] += v
	}
	s.res.Weight += rep.GetWeight()
	// Each device counts 0 or 1 (the tier refuses distributed DP: no group's count carries
	// noise), so a group's count lies in [0, count] up to the inner protocol's rounding. Beyond it
	// — forged by the edge, or one device's encrypted slot that only the group's sum reveals —
	// it would move the adaptive clip by e^(η·excess/n); clamped, a group moves it no further
	// than its devices all clipped or all unclipped would.
	s.res.Unclipped += min(max(rep.GetUnclipped(), 0), float64(rep.GetCount()))
	s.res.Count += int(rep.GetCount())
	s.groups++
	return nil
}

func (s *groupedServer) Drop(id fl.ClientID) {
	s.lost++
	if s.log != nil {
		s.log.Warn("aggregation group lost", "group", s.reqs[id].GetGroup(), "devices", len(s.reqs[id].GetHolders()))
	}
}

func (s *groupedServer) Result() (fl.SumResult, error) {
	if s.groups == 0 {
		return fl.SumResult{}, fmt.Errorf("%w: every aggregation group (%d) was lost", fl.ErrRoundAbandoned, s.lost)
	}
	s.res.Sum = s.sum
	return s.res, nil
}

func decodeSumRequest(b []byte) (*tierv1.SumGroupRequest, error) {
	var r tierv1.SumGroupRequest
	if err := proto.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("group request: %w", err)
	}
	return &r, nil
}

func encodeSumReply(r *tierv1.SumGroupReply) ([]byte, error) { return proto.Marshal(r) }
