package strategy

import (
	"math"
	"strings"
	"testing"

	"shoal/fl"
)

// three updates of two coordinates with weights 1, 2, 1: mean = (Σ wΔ)/4.
var (
	deltas  = [][]float32{{1, -2}, {3, 0}, {-1, 10}}
	weights = []float64{1, 2, 1}
)

func aggregate() *fl.Aggregate {
	a := &fl.Aggregate{Mean: []float32{(1 + 6 - 1) / 4.0, (-2 + 0 + 10) / 4.0}, TotalWeight: 4, Count: 3}
	for i, d := range deltas {
		a.Updates = append(a.Updates, fl.Update{Client: fl.ClientID(i), Delta: d, Weight: weights[i]})
	}
	return a
}

func near(t *testing.T, what string, got []float32, want ...float64) {
	t.Helper()
	for j := range want {
		if math.Abs(float64(got[j])-want[j]) > 1e-5*(1+math.Abs(want[j])) {
			t.Fatalf("%s: coordinate %d = %v, want %v (all: %v)", what, j, got[j], want[j], got)
		}
	}
}

func TestFedAvgAppliesServerLR(t *testing.T) {
	s, _ := New("fedavg", Params{"server-lr": 0.5})
	g := []float32{10, 20}
	if err := s.AggregateFit(1, g, aggregate()); err != nil {
		t.Fatal(err)
	}
	near(t, "fedavg", g, 10+0.5*1.5, 20+0.5*2)
}

func TestFedProxSetsMu(t *testing.T) {
	s, _ := New("fedprox", Params{"prox-mu": 0.1})
	if got := s.ConfigureFit(1, fl.FitConfig{}).ProxMu; got != 0.1 {
		t.Fatalf("μ = %v, want 0.1", got)
	}
	g := []float32{0, 0}
	_ = s.AggregateFit(1, g, aggregate())
	near(t, "fedprox", g, 1.5, 2)
}

func TestFedAvgMMomentum(t *testing.T) {
	s, _ := New("fedavgm", Params{"server-momentum": 0.5, "server-lr": 1})
	g := []float32{0, 0}
	_ = s.AggregateFit(1, g, aggregate()) // v = Δ, g = Δ
	_ = s.AggregateFit(2, g, aggregate()) // v = 0.5Δ + Δ, g = Δ + 1.5Δ
	near(t, "fedavgm", g, 2.5*1.5, 2.5*2)
}

func TestAdaptiveOptimisersByHand(t *testing.T) {
	d := []float64{1.5, 2}
	for _, tc := range []struct {
		name string
		v    func(d float64) float64 // v after the first step from v₀ = 0
	}{
		{"fedadam", func(d float64) float64 { return 0.01 * d * d }},
		{"fedyogi", func(d float64) float64 { return 0.01 * d * d }}, // v₀ − Δ² < 0 → v = (1−β₂)Δ²
		{"fedadagrad", func(d float64) float64 { return d * d }},
	} {
		s, err := New(tc.name, Params{"server-lr": 0.1, "server-beta1": 0.9, "server-beta2": 0.99, "server-tau": 0.001})
		if err != nil {
			t.Fatal(err)
		}
		g := []float32{0, 0}
		if err := s.AggregateFit(1, g, aggregate()); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, 2)
		for j := range d {
			m := 0.1 * d[j]
			want[j] = 0.1 * m / (math.Sqrt(tc.v(d[j])) + 0.001)
		}
		near(t, tc.name, g, want...)
	}
}

func TestRobustAggregatorsByHand(t *testing.T) {
	cases := []struct {
		name string
		o    Params
		want []float64
	}{
		{"fedmedian", nil, []float64{1, 0}},
		// 3 updates, β = 0.34 cuts one from each end: the middle value remains.
		{"fedtrimmedavg", Params{"trim-fraction": 0.34}, []float64{1, 0}},
		// n − f − 2 = 1 neighbour: scores are each update's squared distance to its nearest
		// other. d(0,1) = 8, d(0,2) = 148, d(1,2) = 116 → scores 8, 8, 116; Krum keeps update 0.
		{"krum", nil, []float64{1, -2}},
		// MultiKrum keeping 2: updates 0 and 1 weighted by their examples (1 and 2), as Flower
		// does: (1·(1, −2) + 2·(3, 0))/3.
		{"multikrum", Params{"krum-keep": 2}, []float64{7.0 / 3, -2.0 / 3}},
	}
	for _, tc := range cases {
		s, err := New(tc.name, tc.o)
		if err != nil {
			t.Fatal(err)
		}
		if !s.NeedsIndividualUpdates() {
			t.Fatalf("%s must need individual updates", tc.name)
		}
		g := []float32{0, 0}
		if err := s.AggregateFit(1, g, aggregate()); err != nil {
			t.Fatal(err)
		}
		near(t, tc.name, g, tc.want...)
		// Under a secure sum the updates are hidden: a clear error, not a silent mean.
		agg := aggregate()
		agg.Updates = nil
		if err := s.AggregateFit(1, g, agg); err == nil || !strings.Contains(err.Error(), "individual") {
			t.Fatalf("%s without individual updates: err = %v", tc.name, err)
		}
	}
}

func TestKrumRejectsOutlier(t *testing.T) {
	agg := &fl.Aggregate{}
	for i := range 6 {
		d := []float32{float32(i) * 0.01, 1}
		if i == 5 {
			d = []float32{100, -100} // a Byzantine update
		}
		agg.Updates = append(agg.Updates, fl.Update{Client: fl.ClientID(i), Delta: d, Weight: 1})
	}
	s, _ := New("multikrum", Params{"krum-f": 1})
	g := []float32{0, 0}
	if err := s.AggregateFit(1, g, agg); err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(g[1])-1) > 1e-6 {
		t.Fatalf("MultiKrum let the outlier in: %v", g)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	if _, err := New("fedsomething", nil); err == nil || !strings.Contains(err.Error(), "fedavg") {
		t.Fatalf("unknown strategy error should list valid names, got %v", err)
	}
	for _, o := range []Params{{"server-lr": math.NaN()}, {"server-lr": -1}, {"trim-fraction": 0.5}, {"krum-f": 1.5}} {
		name := "fedavg"
		if o["trim-fraction"] != 0 {
			name = "fedtrimmedavg"
		}
		if o["krum-f"] != 0 {
			name = "krum"
		}
		if _, err := New(name, o); err == nil {
			t.Fatalf("New(%s, %+v) accepted bad options", name, o)
		}
	}
	s, _ := New("fedavg", nil)
	if err := s.AggregateFit(1, []float32{0}, aggregate()); err == nil {
		t.Fatal("dimension mismatch accepted")
	}
}

func TestAggregateEvaluateWeighted(t *testing.T) {
	s, _ := New("fedavg", nil)
	loss, acc := s.AggregateEvaluate(1, []fl.EvalRes{{Loss: 1, Accuracy: 0.5, NumExamples: 1}, {Loss: 4, Accuracy: 1, NumExamples: 3}})
	if math.Abs(loss-3.25) > 1e-12 || math.Abs(acc-0.875) > 1e-12 {
		t.Fatalf("got %v %v", loss, acc)
	}
}

// "Unset" is explicit: an absent hyper-parameter takes the default, a given 0 is used as 0.
func TestExplicitZeroIsNotTheDefault(t *testing.T) {
	if got := (Params{"x": 0}).Get("x", 0.9); got != 0 {
		t.Fatalf("Get of a given 0 = %v", got)
	}
	if got := (Params{}).Get("x", 0.9); got != 0.9 {
		t.Fatalf("Get of an absent value = %v", got)
	}
	// FedAvgM with momentum 0 is FedAvg: the second step is the second mean alone.
	two := func(p Params) []float32 {
		s, err := New("fedavgm", p)
		if err != nil {
			t.Fatal(err)
		}
		g := []float32{0, 0}
		for range 2 {
			if err := s.AggregateFit(1, g, aggregate()); err != nil {
				t.Fatal(err)
			}
		}
		return g
	}
	near(t, "fedavgm momentum 0", two(Params{"server-momentum": 0}), 2*1.5, 2*2)
	near(t, "fedavgm default momentum 0.9", two(nil), 1.5+1.9*1.5, 2+1.9*2)

	// FedAdagrad with β₁ = 0 (Flower's): m = Δ, v = Δ², x = η·Δ/(|Δ| + τ).
	s, err := New("fedadagrad", Params{"server-beta1": 0, "server-lr": 0.1, "server-tau": 0.001})
	if err != nil {
		t.Fatal(err)
	}
	g := []float32{0, 0}
	if err := s.AggregateFit(1, g, aggregate()); err != nil {
		t.Fatal(err)
	}
	near(t, "fedadagrad β₁ = 0", g, 0.1*1.5/(1.5+0.001), 0.1*2/(2+0.001))

	// FedTrimmedAvg with fraction 0 is the plain mean; the default 0.2 cuts one of five at each end.
	five := &fl.Aggregate{}
	for i, v := range []float32{0, 1, 2, 3, 100} {
		five.Updates = append(five.Updates, fl.Update{Client: fl.ClientID(i), Delta: []float32{v}, Weight: 1})
	}
	for _, tc := range []struct {
		p    Params
		want float64
	}{{Params{"trim-fraction": 0}, 106.0 / 5}, {nil, 2}} {
		s, err := New("fedtrimmedavg", tc.p)
		if err != nil {
			t.Fatal(err)
		}
		g := []float32{0}
		if err := s.AggregateFit(1, g, five); err != nil {
			t.Fatal(err)
		}
		near(t, "fedtrimmedavg", g, tc.want)
	}
	// Where 0 is meaningless it is refused, not taken as the default.
	for _, tc := range []struct {
		name string
		p    Params
	}{{"fedavg", Params{"server-lr": 0}}, {"fedadam", Params{"server-tau": 0}}, {"multikrum", Params{"krum-keep": 0}}} {
		if _, err := New(tc.name, tc.p); err == nil || !strings.Contains(err.Error(), "> 0") {
			t.Errorf("New(%s, %v): %v, want a refusal of 0", tc.name, tc.p, err)
		}
	}
}

// FedAdam's bias correction is an option: off, Reddi et al.'s Algorithm 2; on, Flower's
// η·√(1−β₂^(t+1))/(1−β₁^(t+1)) in round t.
func TestFedAdamBiasCorrection(t *testing.T) {
	step := func(p Params, round int) []float32 {
		s, err := New("fedadam", p)
		if err != nil {
			t.Fatal(err)
		}
		g := []float32{0, 0}
		if err := s.AggregateFit(round, g, aggregate()); err != nil {
			t.Fatal(err)
		}
		return g
	}
	// One step from zero moments: m = 0.1Δ, v = 0.01Δ², x = η·0.1Δ/(0.1|Δ| + τ).
	plain := func(d float64) float64 { return 0.01 * 0.1 * d / (0.1*math.Abs(d) + 0.001) }
	near(t, "fedadam", step(nil, 3), plain(1.5), plain(2))
	for _, round := range []int{1, 3} {
		tt := float64(round + 1)
		f := math.Sqrt(1-math.Pow(0.99, tt)) / (1 - math.Pow(0.9, tt))
		near(t, "fedadam corrected", step(Params{"server-bias-correction": 1}, round), f*plain(1.5), f*plain(2))
	}
	if _, err := New("fedadam", Params{"server-bias-correction": 2}); err == nil {
		t.Fatal("--server-bias-correction 2 accepted")
	}
	for _, p := range AllParams() {
		if p.Name == "server-bias-correction" && !strings.HasSuffix(p.Usage, "(fedadam)") {
			t.Fatalf("server-bias-correction is declared by other strategies: %q", p.Usage)
		}
	}
}
