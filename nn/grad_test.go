package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randData(rng *rand.Rand, n int, in Shape, classes int) ([]float32, []int32) {
	x := make([]float32, n*in.Size())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	y := make([]int32, n)
	for i := range y {
		y[i] = int32(rng.IntN(classes))
	}
	return x, y
}

// checkGradient compares the backpropagated gradient of the mean loss with central finite
// differences on up to maxCoords parameters (all of them if the model is small) and along one
// random direction through all parameters. The loss is accumulated in float64 from float32
// activations, so eps must stay large enough that rounding (~1e-7 relative, divided by 2ε) is
// below the tolerance. A step can cross a ReLU or max-pool kink, which spoils the difference
// quotient at that step but not at a smaller one, so a coordinate passes if the quotient at ε,
// ε/2 or ε/4 agrees; a wrong gradient disagrees at every step size.
func checkGradient(t *testing.T, m *Model, x []float32, y []int32, maxCoords int, rng *rand.Rand) {
	t.Helper()
	const eps = 1e-3
	m.gradient(x, y)
	grad := append([]float32(nil), m.grads...)
	p := m.params
	lossAt := func(i int, delta float32) float64 {
		old := p[i]
		p[i] = old + delta
		l := m.meanLoss(x, y)
		p[i] = old
		return l
	}
	coords := make([]int, 0, maxCoords)
	if len(p) <= maxCoords {
		for i := range p {
			coords = append(coords, i)
		}
	} else {
		// Every layer block gets sampled, so a bug in any one layer shows up.
		for li, l := range m.layers {
			np := l.numParams()
			for j := 0; j < maxCoords/len(m.layers)+1 && np > 0; j++ {
				coords = append(coords, m.offsets[li]+rng.IntN(np))
			}
		}
	}
	bad, maxRel := 0, 0.0
	var sumAbs float64
	for _, i := range coords {
		ana := float64(grad[i])
		sumAbs += math.Abs(ana)
		num := (lossAt(i, eps) - lossAt(i, -eps)) / (2 * eps)
		diff := math.Abs(num - ana)
		for _, h := range []float32{eps / 2, eps / 4} {
			if diff <= 2e-4+1e-2*math.Max(math.Abs(num), math.Abs(ana)) {
				break
			}
			num2 := (lossAt(i, h) - lossAt(i, -h)) / (2 * float64(h))
			if d2 := math.Abs(num2 - ana); d2 < diff {
				num, diff = num2, d2
			}
		}
		if rel := diff / math.Max(math.Abs(num)+math.Abs(ana), 1e-3); rel > maxRel {
			maxRel = rel
		}
		if diff > 2e-4+1e-2*math.Max(math.Abs(num), math.Abs(ana)) {
			bad++
			if bad <= 5 {
				t.Errorf("param %d: backprop %.6g, finite difference %.6g", i, ana, num)
			}
		}
	}
	if sumAbs == 0 {
		t.Fatalf("all checked gradients are zero: the check proves nothing")
	}
	// Directional derivative along a random unit vector d: (L(w+εd) − L(w−εd))/2ε ≈ ∇L·d.
	d := make([]float64, len(p))
	var norm float64
	for i := range d {
		d[i] = rng.NormFloat64()
		norm += d[i] * d[i]
	}
	norm = math.Sqrt(norm)
	var dot float64
	orig := append([]float32(nil), p...)
	for i := range d {
		d[i] /= norm
		dot += d[i] * float64(grad[i])
	}
	shift := func(s float64) float64 {
		for i := range p {
			p[i] = orig[i] + float32(s*d[i])
		}
		return m.meanLoss(x, y)
	}
	num := (shift(eps) - shift(-eps)) / (2 * eps)
	copy(p, orig)
	if math.Abs(num-dot) > 2e-4+1e-2*math.Abs(dot) {
		t.Errorf("directional derivative: backprop %.6g, finite difference %.6g", dot, num)
	}
	t.Logf("%d coordinates checked, max relative error %.2g; directional %.6g vs %.6g", len(coords), maxRel, dot, num)
}

func TestGradientDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := Shape{1, 1, 7}
	m := newFromLayers("dense", in, 4, []layer{newDense(7, 4, false)}, rng)
	x, y := randData(rng, 5, in, 4)
	checkGradient(t, m, x, y, 1000, rng)
}

func TestGradientReLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	in := Shape{1, 1, 6}
	m := newFromLayers("relu", in, 3, []layer{newDense(6, 9, true), newDense(9, 3, false)}, rng)
	x, y := randData(rng, 6, in, 3)
	checkGradient(t, m, x, y, 1000, rng)
}

func TestGradientConv(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	in := Shape{3, 5, 6} // several channels, not square, kernel wider than the padding
	c := newConv2d(in, 4, 3, false)
	c5 := newConv2d(c.outShape(), 2, 5, true)
	m := newFromLayers("conv", in, 3, []layer{c, c5, newDense(c5.outShape().Size(), 3, false)}, rng)
	for i := range m.params { // non-zero biases so that they matter
		if m.params[i] == 0 {
			m.params[i] = float32(rng.NormFloat64() * 0.1)
		}
	}
	x, y := randData(rng, 3, in, 3)
	checkGradient(t, m, x, y, 2000, rng)
}

func TestGradientMaxPool(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	in := Shape{2, 5, 6} // odd height: the last row is dropped
	c := newConv2d(in, 3, 3, true)
	p := &maxPool2{in: c.outShape()}
	c2 := newConv2d(p.outShape(), 2, 3, false)
	m := newFromLayers("pool", in, 3, []layer{c, p, c2, newDense(c2.outShape().Size(), 3, false)}, rng)
	x, y := randData(rng, 4, in, 3)
	checkGradient(t, m, x, y, 2000, rng)
}

func TestGradientModels(t *testing.T) {
	cases := []struct {
		name    string
		in      Shape
		classes int
	}{
		{"logreg", Shape{1, 1, 10}, 3},
		{"2nn", Shape{1, 1, 12}, 3},
		{"cnn", Shape{2, 8, 8}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, 10))
			m, err := New(c.name, c.in, c.classes, rng)
			if err != nil {
				t.Fatal(err)
			}
			x, y := randData(rng, 4, c.in, c.classes)
			checkGradient(t, m, x, y, 300, rng)
		})
	}
}

func TestSoftmaxCrossEntropyStable(t *testing.T) {
	logits := []float32{1e4, 0, -1e4, 5e4, 5e4, -5e4}
	grad := make([]float32, 6)
	loss, correct := softmaxCrossEntropy(logits, []int32{1, 0}, 3, grad, 1)
	// Row 1: loss = lse − 0 = 1e4. Row 2: two equal maxima, loss = log 2. Naive exp would overflow.
	want := 1e4 + math.Log(2)
	if math.Abs(loss-want) > 1e-9*want || correct != 1 {
		t.Fatalf("loss %v correct %d, want %v and 1", loss, correct, want)
	}
	wantGrad := []float32{0.5, -0.5, 0, -0.25, 0.25, 0}
	for i, g := range grad {
		if math.Abs(float64(g-wantGrad[i])) > 1e-6 {
			t.Fatalf("grad %v, want %v", grad, wantGrad)
		}
	}
}
