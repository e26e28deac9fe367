package he

import (
	"iter"
	"math"
	"math/rand/v2"
	"testing"
)

// testParams uses N = 2^12 to keep tests fast; the default set is exercised by the
// benchmarks and the round test below.
func testParams(t testing.TB) *Params {
	t.Helper()
	p, err := NewParams(ParamsLiteral{LogN: 12, LogQ: []int{54, 54}, LogScale: 80, LogSmudging: 60})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func committeeIDs(k int) []PartyID {
	out := make([]PartyID, k)
	for i := range out {
		out[i] = PartyID(1000 + i)
	}
	return out
}

type plainRound struct {
	updates map[PartyID]Update
	order   []PartyID
	sum     []float64
	weight  float64
}

func randomRound(rng *rand.Rand, clients, dim int) *plainRound {
	r := &plainRound{updates: map[PartyID]Update{}, sum: make([]float64, dim)}
	for c := 0; c < clients; c++ {
		id := PartyID(c + 1)
		v := make([]float32, dim)
		for i := range v {
			v[i] = float32(rng.Float64()*2 - 1)
		}
		w := float64(1 + rng.IntN(600))
		r.updates[id] = Update{Values: v, Weight: w}
		r.order = append(r.order, id)
		for i := range v {
			r.sum[i] += float64(v[i]) * w
		}
		r.weight += w
	}
	return r
}

func (r *plainRound) seq(drop map[PartyID]bool) iter.Seq2[PartyID, Update] {
	return func(yield func(PartyID, Update) bool) {
		for _, id := range r.order {
			if drop[id] {
				continue
			}
			if !yield(id, r.updates[id]) {
				return
			}
		}
	}
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func TestRoundSumsCloseToPlain(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(5)
	setup, keys := runCeremony(t, p, committee, 3)
	rng := rand.New(rand.NewPCG(1, 2))
	dim := 3*p.N() + 17 // several ciphertexts, the weight in the last one
	r := randomRound(rng, 20, dim)
	agg, stats, err := runRound(t, setup, keys, 7, dim, r.seq(nil), committee[1:4])
	if err != nil {
		t.Fatal(err)
	}
	if stats.Uploads != 20 || len(agg.Contributors) != 20 {
		t.Fatalf("uploads %d, contributors %d", stats.Uploads, len(agg.Contributors))
	}
	errSum := maxAbsDiff(agg.Sum, r.sum)
	errW := math.Abs(agg.TotalWeight - r.weight)
	bound := p.MaxAbsError(3)
	t.Logf("max |sum error| = %.3g, weight error %.3g, bound %.3g", errSum, errW, bound)
	if errSum > bound || errW > bound {
		t.Fatalf("error %.3g / %.3g exceeds bound %.3g", errSum, errW, bound)
	}
}

func TestPrecisionManyClients(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(4)
	setup, keys := runCeremony(t, p, committee, 2)
	sizes := []int{10, 100, 1000}
	if testing.Short() {
		sizes = sizes[:2]
	}
	for _, clients := range sizes {
		rng := rand.New(rand.NewPCG(uint64(clients), 9))
		dim := 300
		r := randomRound(rng, clients, dim)
		agg, _, err := runRound(t, setup, keys, 1, dim, r.seq(nil), committee)
		if err != nil {
			t.Fatal(err)
		}
		mean := agg.Mean()
		maxMeanErr := 0.0
		for i := range mean {
			maxMeanErr = math.Max(maxMeanErr, math.Abs(mean[i]-r.sum[i]/r.weight))
		}
		errSum := maxAbsDiff(agg.Sum, r.sum)
		t.Logf("%4d clients: max |sum error| %.3g (bound %.3g), max |mean error| %.3g", clients, errSum, p.MaxAbsError(2), maxMeanErr)
		if errSum > p.MaxAbsError(2) || math.Abs(agg.TotalWeight-r.weight) > p.MaxAbsError(2) {
			t.Fatalf("%d clients: sum error %.3g above bound", clients, errSum)
		}
		if maxMeanErr > 1e-6 {
			t.Fatalf("%d clients: mean error %.3g", clients, maxMeanErr)
		}
	}
}

func TestDropoutsBeforeUploadAreLeftOut(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	setup, keys := runCeremony(t, p, committee, 2)
	r := randomRound(rand.New(rand.NewPCG(3, 4)), 10, 50)
	drop := map[PartyID]bool{2: true, 5: true, 9: true}
	agg, _, err := runRound(t, setup, keys, 1, 50, r.seq(drop), committee[1:])
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 50)
	weight := 0.0
	for _, id := range r.order {
		if drop[id] {
			continue
		}
		u := r.updates[id]
		for i, x := range u.Values {
			want[i] += float64(x) * u.Weight
		}
		weight += u.Weight
	}
	if len(agg.Contributors) != 7 {
		t.Fatalf("%d contributors, want 7", len(agg.Contributors))
	}
	if e := maxAbsDiff(agg.Sum, want); e > p.MaxAbsError(2) || math.Abs(agg.TotalWeight-weight) > p.MaxAbsError(2) {
		t.Fatalf("sum over survivors off by %.3g", e)
	}
}

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed+1)) }

// TestFreshNoiseEstimate checks the noise model behind SmudgingSecurityBits against the
// noise actually measured in a decrypted aggregate (with negligible smudging).
func TestFreshNoiseEstimate(t *testing.T) {
	p, err := NewParams(ParamsLiteral{LogN: 12, LogQ: []int{54, 54}, LogScale: 40, LogSmudging: 0})
	if err != nil {
		t.Fatal(err)
	}
	committee := committeeIDs(3)
	setup, keys := runCeremony(t, p, committee, 2)
	const clients, dim = 40, 4000
	zeros := func(yield func(PartyID, Update) bool) {
		for c := 1; c <= clients; c++ {
			if !yield(PartyID(c), Update{Values: make([]float32, dim), Weight: 1}) {
				return
			}
		}
	}
	agg, _, err := runRound(t, setup, keys, 1, dim, zeros, committee)
	if err != nil {
		t.Fatal(err)
	}
	var sq float64
	for _, v := range agg.Sum {
		e := math.Ldexp(v, p.LogScale()) // back to coefficient units
		sq += e * e
	}
	measured := math.Sqrt(sq / dim)
	want := p.FreshNoiseStd(3) * math.Sqrt(clients)
	t.Logf("aggregate noise σ measured %.0f, model %.0f", measured, want)
	if measured < 0.85*want || measured > 1.15*want {
		t.Fatalf("noise σ %.0f outside ±15%% of the model's %.0f", measured, want)
	}
}

func TestWeightSlotAtCiphertextBoundaries(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(2)
	setup, keys := runCeremony(t, p, committee, 2)
	for _, dim := range []int{1, p.N() - 1, p.N(), p.N() + 1} {
		r := randomRound(newRNG(uint64(dim)), 3, dim)
		agg, _, err := runRound(t, setup, keys, 1, dim, r.seq(nil), committee)
		if err != nil {
			t.Fatalf("dim %d: %v", dim, err)
		}
		if p.CiphertextsFor(dim) != (dim+p.N())/p.N() {
			t.Fatalf("dim %d: %d ciphertexts", dim, p.CiphertextsFor(dim))
		}
		if e := maxAbsDiff(agg.Sum, r.sum); e > p.MaxAbsError(2) || math.Abs(agg.TotalWeight-r.weight) > p.MaxAbsError(2) {
			t.Fatalf("dim %d: error %.3g, weight %v vs %v", dim, e, agg.TotalWeight, r.weight)
		}
	}
}

func TestEncodeDecodeExact(t *testing.T) {
	p := DefaultParams()
	coeffs := make([][]uint64, len(p.moduli))
	for j := range coeffs {
		coeffs[j] = make([]uint64, 1)
	}
	digits := make([]int64, len(p.moduli))
	rng := newRNG(3)
	values := []float64{0, 1, -1, 0.5, -0.25, 1e-30, -1e-30, p.Capacity(), -p.Capacity(), 3.141592653589793, 600 * 0.999}
	for i := 0; i < 1000; i++ {
		values = append(values, (rng.Float64()*2-1)*math.Pow(10, float64(rng.IntN(20)-10)))
	}
	one := make([]float64, 1)
	for _, v := range values {
		p.encodeValue(v, coeffs, 0)
		got := p.decodeValue(coeffs, 0, digits)
		if p.decodeRange(coeffs, one, digits); one[0] != got {
			t.Fatalf("decodeRange %v, decodeValue %v", one[0], got)
		}
		// round(v·Δ)/Δ differs from v by at most half a unit in the last place of the
		// fixed point, plus float64 rounding of the result.
		if tol := math.Ldexp(0.5, -p.logScale) + math.Abs(v)*0x1p-52; math.Abs(got-v) > tol {
			t.Fatalf("%v decodes to %v (error %.3g > %.3g)", v, got, math.Abs(got-v), tol)
		}
	}
}
