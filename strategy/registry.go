// Package strategy implements Shoal's aggregation strategies: FedAvg and FedProx (McMahan et al.
// 2017; Li et al. 2020), FedAvgM (Hsu et al. 2019), the adaptive server optimisers FedAdam,
// FedYogi and FedAdagrad (Reddi et al. 2021), and the robust aggregators FedMedian,
// FedTrimmedAvg and Krum/MultiKrum (Blanchard et al. 2017).
//
// Each strategy implements fl.Strategy and registers itself, with the hyper-parameters it
// declares, from its own file (see Register); a strategy with server state (momentum, moments)
// also implements fl.Stateful so that a resumed run continues exactly. The command line makes a
// flag of every declared hyper-parameter. strategy depends only on package fl.
package strategy

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"shoal/fl"
)

// Param is a hyper-parameter a strategy declares. The command line makes a flag --Name (and a
// --config key) of it; strategies may share a name (server-lr), and then share the flag.
type Param struct {
	Name  string
	Usage string
	// Integer marks a count (krum-f): a fractional value is refused.
	Integer bool
	// Positive marks a value that must be > 0 when given (a learning rate): 0 is refused
	// rather than taken to mean the default.
	Positive bool
}

// Params are the hyper-parameter values that were given, by name. A name that is absent takes
// the strategy's default; a value that is present is used as given, 0 included (FedAvgM
// momentum 0, FedAdagrad β₁ = 0, trim fraction 0 are meaningful). Values are finite and ≥ 0
// (New checks).
type Params map[string]float64

// Get returns the value of name, or def when name was not given.
func (p Params) Get(name string, def float64) float64 {
	if v, ok := p[name]; ok {
		return v
	}
	return def
}

type entry struct {
	params []Param
	build  func(Params) (fl.Strategy, error)
}

var registry = map[string]entry{}

// Register adds a strategy under name, with the hyper-parameters it reads; build gets the values
// given (absent for those not given: Params.Get supplies the default). It is called from an init function in the strategy's file.
func Register(name string, params []Param, build func(Params) (fl.Strategy, error)) {
	if _, dup := registry[name]; dup {
		panic("strategy: registered twice: " + name)
	}
	registry[name] = entry{params: params, build: build}
}

// Names lists the registered strategies, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for k := range registry {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// AllParams lists every hyper-parameter any strategy declares, once per name, sorted by name,
// with the strategies that read it appended to its usage.
func AllParams() []Param {
	users := map[string][]string{}
	first := map[string]Param{}
	for _, name := range Names() {
		for _, p := range registry[name].params {
			if _, ok := first[p.Name]; !ok {
				first[p.Name] = p
			}
			users[p.Name] = append(users[p.Name], name)
		}
	}
	out := make([]Param, 0, len(first))
	for name, p := range first {
		p.Usage = fmt.Sprintf("%s (%s)", p.Usage, strings.Join(users[name], ", "))
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Param) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// New returns the named strategy (case-insensitive) built from params. A value for a
// hyper-parameter the strategy does not declare is ignored (one flag set serves every strategy).
func New(name string, params Params) (fl.Strategy, error) {
	e, ok := registry[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("unknown strategy %q (valid: %s)", name, strings.Join(Names(), ", "))
	}
	own := Params{}
	for _, p := range e.params {
		v, given := params[p.Name]
		switch {
		case !given:
			continue
		case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
			return nil, fmt.Errorf("strategy %s: --%s must be finite and ≥ 0, got %v", name, p.Name, v)
		case p.Positive && v == 0:
			return nil, fmt.Errorf("strategy %s: --%s must be > 0, got 0", name, p.Name)
		case p.Integer && v != math.Trunc(v):
			return nil, fmt.Errorf("strategy %s: --%s must be a whole number, got %v", name, p.Name, v)
		}
		own[p.Name] = v
	}
	return e.build(own)
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

// Hyper-parameters several strategies share.
var serverLR = Param{Name: "server-lr", Usage: "server learning rate η > 0 (default 1; adaptive optimisers 0.01)", Positive: true}

func checkMean(global []float32, agg *fl.Aggregate) error {
	if agg == nil || len(agg.Mean) != len(global) {
		n := 0
		if agg != nil {
			n = len(agg.Mean)
		}
		return fmt.Errorf("aggregate mean has %d coordinates, the model %d", n, len(global))
	}
	return nil
}
