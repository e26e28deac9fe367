package sim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"

	"shoal/fl"
)

// clearSum is a two-stage stand-in for a secure-sum protocol (it hides nothing): stage 0 asks
// every client to confirm, stage 1 collects the inputs in the clear. It exercises the engine's
// and the simulation's protocol plumbing: stage messages, replies, dropouts, abandonment.
type clearSum struct{ minSurvivors int }

func (clearSum) Name() string     { return "clear" }
func (clearSum) Describe() string { return "no protection (test protocol)" }
func (clearSum) Stages() []string { return []string{"confirm", "input"} }

func (p clearSum) NewServer(round int, clients []fl.ClientID, dim int, _ float64) (fl.SumServer, error) {
	alive := map[fl.ClientID]bool{}
	for _, id := range clients {
		alive[id] = true
	}
	return &clearServer{min: p.minSurvivors, dim: dim, alive: alive, res: fl.SumResult{Sum: make([]float64, dim)}}, nil
}

func (clearSum) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	return &clearClient{in: in}, nil
}

type clearServer struct {
	min, dim, stage int
	alive           map[fl.ClientID]bool
	res             fl.SumResult
}

func (s *clearServer) Next() (map[fl.ClientID][]byte, bool, error) {
	if len(s.alive) < s.min {
		return nil, false, fmt.Errorf("%w: %d survivors", fl.ErrRoundAbandoned, len(s.alive))
	}
	if s.stage == 2 {
		return nil, true, nil
	}
	msgs := map[fl.ClientID][]byte{}
	for id := range s.alive {
		msgs[id] = []byte{byte(s.stage)}
	}
	s.stage++
	return msgs, false, nil
}

func (s *clearServer) Receive(from fl.ClientID, msg []byte) error {
	if s.stage == 1 {
		return nil
	}
	if len(msg) != 8*(s.dim+2) {
		return errors.New("bad input length")
	}
	w := math.Float64frombits(binary.LittleEndian.Uint64(msg))
	for j := range s.dim {
		s.res.Sum[j] += w * math.Float64frombits(binary.LittleEndian.Uint64(msg[8*(j+1):]))
	}
	s.res.Weight += w
	s.res.Unclipped += math.Float64frombits(binary.LittleEndian.Uint64(msg[8*(s.dim+1):]))
	s.res.Count++
	return nil
}

func (s *clearServer) Drop(id fl.ClientID)           { delete(s.alive, id) }
func (s *clearServer) Result() (fl.SumResult, error) { return s.res, nil }

type clearClient struct{ in fl.SumInput }

func (c *clearClient) Handle(msg []byte) ([]byte, error) {
	if msg[0] == 0 {
		return []byte("ok"), nil
	}
	out := binary.LittleEndian.AppendUint64(nil, math.Float64bits(c.in.Weight))
	for _, v := range c.in.Update {
		out = binary.LittleEndian.AppendUint64(out, math.Float64bits(float64(v)))
	}
	return binary.LittleEndian.AppendUint64(out, math.Float64bits(c.in.Unclipped)), nil
}

// The engine's secure path gives the same model as the plain path when nobody drops, never
// sees an update in FitRes, and survives dropouts inside the protocol.
func TestSecureSumPathMatchesPlainSum(t *testing.T) {
	fed := federation(t, 12, 20)
	plain, p1 := engine(t, fed, Config{Seed: 4}, 0.5)
	if _, err := plain.Run(context.Background(), p1); err != nil {
		t.Fatal(err)
	}
	proto := clearSum{minSurvivors: 2}
	secure, p2 := engine(t, fed, Config{Seed: 4, SecureSum: proto}, 0.5)
	secure.SecureSum = proto
	hist, err := secure.Run(context.Background(), p2)
	if err != nil {
		t.Fatal(err)
	}
	for j := range p1 {
		if math.Abs(float64(p1[j]-p2[j])) > 1e-5 {
			t.Fatalf("coordinate %d: plain %v, secure path %v", j, p1[j], p2[j])
		}
	}
	if hist[0].Participants != 6 {
		t.Fatalf("participants %d, want 6", hist[0].Participants)
	}

	// Half the clients drop at the input stage: the round goes on with the rest.
	lossy, p3 := engine(t, fed, Config{Seed: 4, SecureSum: proto, StageDropout: 0.5, DropStage: 1}, 1)
	lossy.SecureSum = proto
	hist, err = lossy.Run(context.Background(), p3)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range hist {
		if r.Participants+r.Dropped != 12 || r.Dropped == 0 || r.Abandoned != "" {
			t.Fatalf("round %d: participants %d dropped %d abandoned %q", r.Round, r.Participants, r.Dropped, r.Abandoned)
		}
	}

	// Too few survivors: the round is abandoned and the model left unchanged.
	strict := clearSum{minSurvivors: 13}
	abandon, p4 := engine(t, fed, Config{Seed: 4, SecureSum: strict}, 1)
	abandon.SecureSum = strict
	before := append([]float32(nil), p4...)
	hist, err = abandon.Run(context.Background(), p4)
	if err != nil {
		t.Fatal(err)
	}
	if hist[0].Abandoned == "" || hist[0].Participants != 0 {
		t.Fatalf("round should be abandoned: %+v", hist[0])
	}
	for j := range before {
		if before[j] != p4[j] {
			t.Fatal("an abandoned round changed the model")
		}
	}
}

func TestSecureSumRefusesRobustStrategies(t *testing.T) {
	fed := federation(t, 4, 5)
	e, _ := engine(t, fed, Config{Seed: 1, SecureSum: clearSum{}}, 1)
	e.SecureSum = clearSum{}
	e.Strategy = mustStrategy(t, "fedmedian")
	if err := e.Validate(); err == nil {
		t.Fatal("median over a secure sum accepted")
	}
}
