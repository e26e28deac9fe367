package strategy

import (
	"fmt"
	"math"
	"slices"

	"shoal/fl"
)

func init() {
	params := []Param{serverLR,
		{Name: "server-beta1", Usage: "adaptive server optimiser: first-moment decay β₁ in [0, 1) (default 0.9)"},
		{Name: "server-beta2", Usage: "adaptive server optimiser: second-moment decay β₂ in [0, 1) (default 0.99)"},
		{Name: "server-tau", Usage: "adaptive server optimiser: adaptivity τ > 0 (default 0.001)", Positive: true}}
	biasCorrection := Param{Name: "server-bias-correction", Integer: true,
		Usage: "1: scale η by √(1−β₂^(t+1))/(1−β₁^(t+1)) in round t, as Flower does (default 0: Reddi et al.'s Algorithm 2)"}
	for _, variant := range []string{"fedadam", "fedyogi", "fedadagrad"} {
		declared := params
		if variant == "fedadam" {
			declared = append(slices.Clone(params), biasCorrection)
		}
		Register(variant, declared, func(p Params) (fl.Strategy, error) {
			s := &Adaptive{Variant: variant, ServerLR: p.Get("server-lr", 0.01), Beta1: p.Get("server-beta1", 0.9),
				Beta2: p.Get("server-beta2", 0.99), Tau: p.Get("server-tau", 1e-3)}
			switch bc := p.Get("server-bias-correction", 0); {
			case s.Beta1 >= 1:
				return nil, fmt.Errorf("%s: --server-beta1 must be in [0, 1), got %v", variant, s.Beta1)
			case s.Beta2 >= 1:
				return nil, fmt.Errorf("%s: --server-beta2 must be in [0, 1), got %v", variant, s.Beta2)
			case bc > 1:
				return nil, fmt.Errorf("%s: --server-bias-correction is 0 (off) or 1 (on), got %v", variant, bc)
			default:
				s.BiasCorrection = bc == 1
			}
			return s, nil
		})
	}
}

// Adaptive is the FedOpt family (Reddi et al. 2021, Algorithm 2): the mean update Δ is a
// pseudo-gradient fed to a server Adam, Yogi or Adagrad: m ← β₁m + (1−β₁)Δ; v per the variant;
// x ← x + η·m/(√v + τ). The moments are server state, saved with every checkpoint.
//
// BiasCorrection (FedAdam's --server-bias-correction 1) scales η in round t by
// √(1−β₂^(t+1))/(1−β₁^(t+1)), as Flower's FedAdam does; the default follows the paper.
type Adaptive struct {
	meanEval
	Variant                string
	ServerLR, Beta1, Beta2 float64
	Tau                    float64
	BiasCorrection         bool
	m, v                   []float64
}

var _ fl.Stateful = (*Adaptive)(nil)

func (s *Adaptive) Name() string                                  { return s.Variant }
func (*Adaptive) ConfigureFit(_ int, c fl.FitConfig) fl.FitConfig { return c }
func (*Adaptive) NeedsIndividualUpdates() bool                    { return false }
func (s *Adaptive) AggregateFit(round int, global []float32, agg *fl.Aggregate) error {
	if err := checkMean(global, agg); err != nil {
		return err
	}
	eta := s.ServerLR
	if s.BiasCorrection {
		t := float64(round) + 1
		eta *= math.Sqrt(1-math.Pow(s.Beta2, t)) / (1 - math.Pow(s.Beta1, t))
	}
	if s.m == nil {
		s.m = make([]float64, len(global))
		s.v = make([]float64, len(global))
	}
	for j, d32 := range agg.Mean {
		d := float64(d32)
		s.m[j] = s.Beta1*s.m[j] + (1-s.Beta1)*d
		d2 := d * d
		switch s.Variant {
		case "fedadam":
			s.v[j] = s.Beta2*s.v[j] + (1-s.Beta2)*d2
		case "fedyogi":
			diff := s.v[j] - d2
			sign := 0.0
			if diff > 0 {
				sign = 1
			} else if diff < 0 {
				sign = -1
			}
			s.v[j] -= (1 - s.Beta2) * d2 * sign
		default: // fedadagrad
			s.v[j] += d2
		}
		global[j] += float32(eta * s.m[j] / (math.Sqrt(s.v[j]) + s.Tau))
	}
	return nil
}

// SaveState saves the optimiser's moments.
func (s *Adaptive) SaveState() ([]byte, error) { return encodeState(s.Name(), s.m, s.v), nil }

// RestoreState restores moments saved by SaveState.
func (s *Adaptive) RestoreState(b []byte) error {
	v, err := decodeState(s.Name(), 2, b)
	if err != nil {
		return err
	}
	s.m, s.v = v[0], v[1]
	if len(s.m) == 0 {
		s.m, s.v = nil, nil
	}
	return nil
}
