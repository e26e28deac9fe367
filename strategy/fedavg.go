package strategy

import "shoal/fl"

func init() {
	Register("fedavg", []Param{serverLR}, func(p Params) (fl.Strategy, error) {
		return &FedAvg{ServerLR: p.Get("server-lr", 1)}, nil
	})
	Register("fedprox", []Param{serverLR, {Name: "prox-mu", Usage: "FedProx proximal μ (default 0.01)"}}, func(p Params) (fl.Strategy, error) {
		return &FedProx{FedAvg: FedAvg{ServerLR: p.Get("server-lr", 1)}, Mu: p.Get("prox-mu", 0.01)}, nil
	})
}

// FedAvg moves the global model by η times the example-weighted mean update.
type FedAvg struct {
	meanEval
	ServerLR float64
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

func (*FedProx) Name() string { return "fedprox" }
func (s *FedProx) ConfigureFit(_ int, c fl.FitConfig) fl.FitConfig {
	c.ProxMu = float32(s.Mu)
	return c
}
