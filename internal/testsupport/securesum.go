package testsupport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"shoal/fl"
)

// ClearSum is a two-stage stand-in for a secure-sum protocol that hides nothing: a round of
// it exercises a transport's Exchange, the client's held input and the stage plumbing, and its
// sum is the plain weighted sum. Stage 0 asks each client to confirm its id; stage 1 collects
// each input (its weight, the update, then its unclipped bit, as little-endian float64s).
// MinSurvivors, when set, abandons the round once fewer clients remain.
type ClearSum struct{ MinSurvivors int }

var _ fl.SecureSum = ClearSum{}

func (ClearSum) Name() string     { return "clear" }
func (ClearSum) Describe() string { return "test protocol" }
func (ClearSum) Stages() []string { return []string{"confirm", "input"} }

// Sensitivity is clip: the sum is exact.
func (ClearSum) Sensitivity(clip float64, _ int) float64 { return clip }
func (p ClearSum) NewServer(round int, clients []fl.ClientID, dim int, _ float64) (fl.SumServer, error) {
	alive := map[fl.ClientID]bool{}
	for _, id := range clients {
		alive[id] = true
	}
	return &clearServer{min: p.MinSurvivors, dim: dim, alive: alive, res: fl.SumResult{Sum: make([]float64, dim)}}, nil
}
func (ClearSum) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	return &clearClient{in: in, id: id}, nil
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
		msgs[id] = []byte{byte(s.stage), byte(id)}
	}
	s.stage++
	return msgs, false, nil
}

func (s *clearServer) Receive(from fl.ClientID, msg []byte) error {
	if s.stage == 1 {
		if string(msg) != fmt.Sprintf("ok %d", from) {
			return fmt.Errorf("bad confirmation %q", msg)
		}
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

type clearClient struct {
	in fl.SumInput
	id fl.ClientID
}

func (c *clearClient) Handle(msg []byte) ([]byte, error) {
	if len(msg) != 2 || fl.ClientID(msg[1]) != c.id {
		return nil, errors.New("message for another client")
	}
	if msg[0] == 0 {
		return fmt.Appendf(nil, "ok %d", c.id), nil
	}
	out := binary.LittleEndian.AppendUint64(nil, math.Float64bits(c.in.Weight))
	for _, v := range c.in.Update {
		out = binary.LittleEndian.AppendUint64(out, math.Float64bits(float64(v)))
	}
	return binary.LittleEndian.AppendUint64(out, math.Float64bits(c.in.Unclipped)), nil
}
