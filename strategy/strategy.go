// Package strategy implements Shoal's aggregation strategies: FedAvg and FedProx (McMahan et al.
// 2017; Li et al. 2020), FedAvgM (Hsu et al. 2019), the adaptive server optimisers FedAdam,
// FedYogi and FedAdagrad (Reddi et al. 2021), and the robust aggregators FedMedian,
// FedTrimmedAvg and Krum/MultiKrum (Blanchard et al. 2017).
//
// Each strategy implements fl.Strategy. It depends only on package fl.
package strategy

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"shoal/fl"
)

// Options are the strategy hyper-parameters; zero values take the documented defaults.
type Options struct {
	ServerLR       float64 // server learning rate η (FedAvg family 1; adaptive 0.01)
	ServerMomentum float64 // FedAvgM momentum β (default 0.9)
	ProxMu         float64 // FedProx μ (default 0.01)
	Beta1, Beta2   float64 // adaptive optimisers' moment decays (defaults 0.9, 0.99)
	Tau            float64 // adaptive optimisers' adaptivity τ (default 1e-3)
	TrimFraction   float64 // FedTrimmedAvg: fraction cut from each end (default 0.2)
	Byzantine      int     // Krum: number of Byzantine clients f tolerated (default 0: n−2 neighbours)
	KrumKeep       int     // MultiKrum: number of best-scored updates averaged (default 1 = Krum)
}

var constructors = map[string]func(Options) (fl.Strategy, error){
	"fedavg":        func(o Options) (fl.Strategy, error) { return newFedAvg(o) },
	"fedprox":       func(o Options) (fl.Strategy, error) { return newFedProx(o) },
	"fedavgm":       func(o Options) (fl.Strategy, error) { return newFedAvgM(o) },
	"fedadam":       func(o Options) (fl.Strategy, error) { return newAdaptive("fedadam", o) },
	"fedyogi":       func(o Options) (fl.Strategy, error) { return newAdaptive("fedyogi", o) },
	"fedadagrad":    func(o Options) (fl.Strategy, error) { return newAdaptive("fedadagrad", o) },
	"fedmedian":     func(o Options) (fl.Strategy, error) { return fedMedian{}, nil },
	"fedtrimmedavg": func(o Options) (fl.Strategy, error) { return newTrimmed(o) },
	"krum":          func(o Options) (fl.Strategy, error) { return newKrum("krum", o) },
	"multikrum":     func(o Options) (fl.Strategy, error) { return newKrum("multikrum", o) },
}

// Names lists the strategies New accepts.
func Names() []string {
	names := make([]string, 0, len(constructors))
	for k := range constructors {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// New returns the named strategy (case-insensitive).
func New(name string, o Options) (fl.Strategy, error) {
	c, ok := constructors[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("unknown strategy %q (valid: %s)", name, strings.Join(Names(), ", "))
	}
	for _, v := range []float64{o.ServerLR, o.ServerMomentum, o.ProxMu, o.Beta1, o.Beta2, o.Tau, o.TrimFraction} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("strategy %s: hyper-parameters must be finite and ≥ 0, got %v", name, v)
		}
	}
	return c(o)
}

// meanEval is the example-weighted mean of federated-evaluation results, shared by all strategies.
type meanEval struct{}

func (meanEval) AggregateEvaluate(_ int, results []fl.EvalRes) (loss, accuracy float64) {
	var n float64
	for _, r := range results {
		w := float64(r.NumExamples)
		loss += w * r.Loss
		accuracy += w * r.Accuracy
		n += w
	}
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	return loss / n, accuracy / n
}

// --- FedAvg, FedProx, FedAvgM ---

// FedAvg moves the global model by η times the example-weighted mean update.
type FedAvg struct {
	meanEval
	ServerLR float64
}

func newFedAvg(o Options) (*FedAvg, error) {
	return &FedAvg{ServerLR: orDefault(o.ServerLR, 1)}, nil
}

func (*FedAvg) Name() string                                    { return "fedavg" }
func (*FedAvg) ConfigureFit(_ int, c fl.FitConfig) fl.FitConfig { return c }
func (*FedAvg) NeedsIndividualUpdates() bool                    { return false }
func (s *FedAvg) AggregateFit(_ int, global []float32, agg *fl.Aggregate) error {
	if err := checkMean(global, agg); err != nil {
		return err
	}
	for j, d := range agg.Mean {
		global[j] += float32(s.ServerLR * float64(d))
	}
	return nil
}

// FedProx is FedAvg whose clients add the proximal term μ/2‖w − w_global‖² to their local loss.
type FedProx struct {
	FedAvg
	Mu float64
}

func newFedProx(o Options) (*FedProx, error) {
	return &FedProx{FedAvg: FedAvg{ServerLR: orDefault(o.ServerLR, 1)}, Mu: orDefault(o.ProxMu, 0.01)}, nil
}

func (*FedProx) Name() string { return "fedprox" }
func (s *FedProx) ConfigureFit(_ int, c fl.FitConfig) fl.FitConfig {
	c.ProxMu = float32(s.Mu)
	return c
}

// FedAvgM keeps server momentum v ← βv + mean and moves the model by ηv (Hsu et al. 2019).
type FedAvgM struct {
	meanEval
	ServerLR, Momentum float64
	velocity           []float64
}

func newFedAvgM(o Options) (*FedAvgM, error) {
	m := orDefault(o.ServerMomentum, 0.9)
	if m >= 1 {
		return nil, fmt.Errorf("fedavgm: server momentum must be < 1, got %v", m)
	}
	return &FedAvgM{ServerLR: orDefault(o.ServerLR, 1), Momentum: m}, nil
}

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

// --- FedAdam, FedYogi, FedAdagrad (Reddi et al. 2021, Algorithm 2) ---

// Adaptive is the FedOpt family: the mean update Δ is a pseudo-gradient fed to a server Adam,
// Yogi or Adagrad: m ← β₁m + (1−β₁)Δ; v per the variant; x ← x + η·m/(√v + τ).
type Adaptive struct {
	meanEval
	Variant                string
	ServerLR, Beta1, Beta2 float64
	Tau                    float64
	m, v                   []float64
}

func newAdaptive(variant string, o Options) (*Adaptive, error) {
	s := &Adaptive{Variant: variant, ServerLR: orDefault(o.ServerLR, 0.01), Beta1: orDefault(o.Beta1, 0.9),
		Beta2: orDefault(o.Beta2, 0.99), Tau: orDefault(o.Tau, 1e-3)}
	if s.Beta1 >= 1 || s.Beta2 >= 1 {
		return nil, fmt.Errorf("%s: β₁ and β₂ must be < 1, got %v and %v", variant, s.Beta1, s.Beta2)
	}
	return s, nil
}

func (s *Adaptive) Name() string                                  { return s.Variant }
func (*Adaptive) ConfigureFit(_ int, c fl.FitConfig) fl.FitConfig { return c }
func (*Adaptive) NeedsIndividualUpdates() bool                    { return false }
func (s *Adaptive) AggregateFit(_ int, global []float32, agg *fl.Aggregate) error {
	if err := checkMean(global, agg); err != nil {
		return err
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
		global[j] += float32(s.ServerLR * s.m[j] / (math.Sqrt(s.v[j]) + s.Tau))
	}
	return nil
}

func orDefault(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

func checkMean(global []float32, agg *fl.Aggregate) error {
	if agg == nil || len(agg.Mean) != len(global) {
		return fmt.Errorf("aggregate mean has %d coordinates, the model %d", lenMean(agg), len(global))
	}
	return nil
}

func lenMean(agg *fl.Aggregate) int {
	if agg == nil {
		return 0
	}
	return len(agg.Mean)
}
