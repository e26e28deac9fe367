package strategy

import (
	"fmt"

	"shoal/fl"
)

func init() {
	Register("fedavgm", []Param{serverLR, {Name: "server-momentum", Usage: "server momentum β in [0, 1) (default 0.9; Flower's 0)"}}, func(p Params) (fl.Strategy, error) {
		m := p.Get("server-momentum", 0.9)
		if m >= 1 {
			return nil, fmt.Errorf("fedavgm: --server-momentum must be in [0, 1), got %v", m)
		}
		return &FedAvgM{ServerLR: p.Get("server-lr", 1), Momentum: m}, nil
	})
}

// FedAvgM keeps server momentum v ← βv + mean and moves the model by ηv (Hsu et al. 2019). The
// velocity is server state, saved with every checkpoint.
type FedAvgM struct {
	meanEval
	ServerLR, Momentum float64
	velocity           []float64
}

var _ fl.Stateful = (*FedAvgM)(nil)

func (*FedAvgM) Name() string                                    { return "fedavgm" }
func (*FedAvgM) ConfigureFit(_ int, c fl.FitConfig) fl.FitConfig { return c }
func (*FedAvgM) NeedsIndividualUpdates() bool                    { return false }
func (s *FedAvgM) AggregateFit(_ int, global []float32, agg *fl.Aggregate) error {
	if err := checkMean(global, agg); err != nil {
		return err
	}
	if s.velocity == nil {
		s.velocity = make([]float64, len(global))
	}
	for j, d := range agg.Mean {
		s.velocity[j] = s.Momentum*s.velocity[j] + float64(d)
		global[j] += float32(s.ServerLR * s.velocity[j])
	}
	return nil
}

// SaveState saves the server velocity.
func (s *FedAvgM) SaveState() ([]byte, error) { return encodeState(s.Name(), s.velocity), nil }

// RestoreState restores a velocity saved by SaveState.
func (s *FedAvgM) RestoreState(b []byte) error {
	v, err := decodeState(s.Name(), 1, b)
	if err != nil {
		return err
	}
	s.velocity = v[0]
	if len(s.velocity) == 0 {
		s.velocity = nil
	}
	return nil
}
