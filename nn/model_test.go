package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

var mnist = Shape{1, 28, 28}

func TestParamCounts(t *testing.T) {
	cases := []struct {
		name   string
		total  int
		layers []int
	}{
		{"logreg", 7850, []int{7850}},
		{"2nn", 199210, []int{157000, 40200, 2010}},
		{"cnn", 1663370, []int{832, 51264, 1606144, 5130}},
	}
	for _, c := range cases {
		m, err := New(c.name, mnist, 10, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if m.NumParams() != c.total || len(m.Params()) != c.total {
			t.Errorf("%s: %d parameters, want %d", c.name, m.NumParams(), c.total)
		}
		if got := m.LayerSizes(); !slices.Equal(got, c.layers) {
			t.Errorf("%s: layer sizes %v, want %v", c.name, got, c.layers)
		}
	}
}

func TestNames(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"2nn", "cnn", "logreg"}) {
		t.Fatalf("Names() = %v", got)
	}
}

func TestNewErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	cases := []struct {
		name    string
		in      Shape
		classes int
		want    string
	}{
		{"resnet", mnist, 10, "valid: 2nn, cnn, logreg"},
		{"cnn", Shape{1, 1, 784}, 10, "image input"},
		{"2nn", Shape{0, 28, 28}, 10, "must be positive"},
		{"logreg", mnist, 1, "between 2 and"},
		{"logreg", Shape{1 << 20, 1 << 20, 1 << 20}, 10, "exceeds"},
	}
	for _, c := range cases {
		_, err := New(c.name, c.in, c.classes, rng)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %v, %d): error %v, want one containing %q", c.name, c.in, c.classes, err, c.want)
		}
	}
	if _, err := New("2nn", mnist, 10, nil); err == nil {
		t.Error("New with a nil rng: no error")
	}
}

func TestNewDeterministic(t *testing.T) {
	a, _ := New("cnn", mnist, 10, rand.New(rand.NewPCG(7, 7)))
	b, _ := New("cnn", mnist, 10, rand.New(rand.NewPCG(7, 7)))
	c, _ := New("cnn", mnist, 10, rand.New(rand.NewPCG(7, 8)))
	if !slices.Equal(a.Params(), b.Params()) {
		t.Error("same seed, different initial weights")
	}
	if slices.Equal(a.Params(), c.Params()) {
		t.Error("different seeds, same initial weights")
	}
	// He-normal: the first dense layer of the 2nn has std sqrt(2/784).
	m, _ := New("2nn", mnist, 10, rand.New(rand.NewPCG(1, 2)))
	w := m.Params()[:784*200]
	var ss float64
	for _, v := range w {
		ss += float64(v) * float64(v)
	}
	if std, want := math.Sqrt(ss/float64(len(w))), math.Sqrt(2.0/784); math.Abs(std-want) > 0.02*want {
		t.Errorf("first layer std %.5f, want %.5f", std, want)
	}
}

// blobs is a learnable problem: class c is a Gaussian blob around a random centre.
func blobs(rng *rand.Rand, n int, in Shape, classes int, spread float64) ([]float32, []int32) {
	d := in.Size()
	centres := make([]float64, classes*d)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	x := make([]float32, n*d)
	y := make([]int32, n)
	for e := range y {
		c := rng.IntN(classes)
		y[e] = int32(c)
		for j := 0; j < d; j++ {
			x[e*d+j] = float32(centres[c*d+j] + spread*rng.NormFloat64())
		}
	}
	return x, y
}

func TestTrainLearns(t *testing.T) {
	cases := []struct {
		name string
		in   Shape
		cfg  TrainConfig
	}{
		{"logreg", Shape{1, 1, 20}, TrainConfig{Epochs: 5, BatchSize: 10, LR: 0.1}},
		{"2nn", Shape{1, 1, 20}, TrainConfig{Epochs: 5, BatchSize: 10, LR: 0.01, Momentum: 0.9, WeightDecay: 1e-4}},
		{"cnn", Shape{2, 8, 8}, TrainConfig{Epochs: 3, BatchSize: 16, LR: 0.005, Momentum: 0.5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, 12))
			x, y := blobs(rng, 400, c.in, 4, 1.5)
			xt, yt := x[:100*c.in.Size()], y[:100]
			m, err := New(c.name, c.in, 4, rng)
			if err != nil {
				t.Fatal(err)
			}
			before, accBefore, err := m.Evaluate(xt, yt)
			if err != nil {
				t.Fatal(err)
			}
			trainLoss, err := m.Train(x[100*c.in.Size():], y[100:], c.cfg, rng)
			if err != nil {
				t.Fatal(err)
			}
			after, acc, err := m.Evaluate(xt, yt)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("held-out loss %.3f → %.3f, accuracy %.2f → %.2f, last-epoch training loss %.3f", before, after, accBefore, acc, trainLoss)
			if after > 0.5*before || acc < 0.9 {
				t.Errorf("did not learn: held-out loss %.3f → %.3f, accuracy %.2f", before, after, acc)
			}
		})
	}
}

func TestTrainDeterministic(t *testing.T) {
	in := Shape{1, 1, 16}
	x, y := blobs(rand.New(rand.NewPCG(1, 1)), 97, in, 3, 1)
	cfg := TrainConfig{Epochs: 2, BatchSize: 10, LR: 0.05, Momentum: 0.9}
	run := func(seed uint64) ([]float32, float64) {
		m, _ := New("2nn", in, 3, rand.New(rand.NewPCG(3, 3)))
		loss, err := m.Train(x, y, cfg, rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			t.Fatal(err)
		}
		return m.Params(), loss
	}
	p1, l1 := run(5)
	p2, l2 := run(5)
	p3, _ := run(6)
	if !slices.Equal(p1, p2) || l1 != l2 {
		t.Error("same seeds, different result")
	}
	if slices.Equal(p1, p3) {
		t.Error("different shuffling seeds, same result")
	}
}

// TestTrainStepExact checks the update rule against gradients computed separately: full-batch
// steps (so shuffling cannot matter), with and without momentum (the in-place path), weight
// decay and the proximal term, on both kernel paths.
func TestTrainStepExact(t *testing.T) {
	for _, mom := range []float32{0, 0.9} {
		for _, arch := range []string{"2nn", "cnn"} {
			t.Run(fmt.Sprintf("%s/momentum=%v", arch, mom), func(t *testing.T) {
				kernels(t, func(t *testing.T) { checkTrainStep(t, arch, mom) })
			})
		}
	}
}

func checkTrainStep(t *testing.T, arch string, mom float32) {
	in := Shape{1, 1, 6}
	if arch == "cnn" {
		in = Shape{2, 6, 5}
	}
	rng := rand.New(rand.NewPCG(2, 3))
	x, y := blobs(rng, 8, in, 3, 1)
	m, _ := New(arch, in, 3, rng)
	center := make([]float32, m.NumParams())
	for i := range center {
		center[i] = float32(rng.NormFloat64())
	}
	const lr, wd, mu = 0.1, 0.01, 0.5
	ref := m.Clone()
	// Two steps by hand: g_t = ∇L + wd·w + mu·(w − c); v_t = mom·v_{t−1} + g_t; w ← w − lr·v_t.
	v := make([]float64, m.NumParams())
	for step := 0; step < 2; step++ {
		ref.gradient(x, y)
		p := ref.Params()
		for i := range p {
			g := float64(ref.grads[i]) + wd*float64(p[i]) + mu*(float64(p[i])-float64(center[i]))
			v[i] = float64(mom)*v[i] + g
			p[i] = float32(float64(p[i]) - lr*v[i])
		}
	}
	cfg := TrainConfig{Epochs: 2, BatchSize: len(y), LR: lr, Momentum: mom, WeightDecay: wd, ProxMu: mu, ProxCenter: center}
	if _, err := m.Train(x, y, cfg, rng); err != nil {
		t.Fatal(err)
	}
	var maxDiff float64
	for i, w := range m.Params() {
		maxDiff = math.Max(maxDiff, math.Abs(float64(w-ref.Params()[i])))
	}
	if maxDiff > 1e-5 {
		t.Errorf("Train differs from the update rule by up to %g", maxDiff)
	}
}

func TestProxPullsTowardCenter(t *testing.T) {
	in := Shape{1, 1, 10}
	rng := rand.New(rand.NewPCG(4, 4))
	x, y := blobs(rng, 200, in, 3, 1)
	global, _ := New("2nn", in, 3, rng)
	dist := func(mu float32) float64 {
		m := global.Clone()
		cfg := TrainConfig{Epochs: 3, BatchSize: 10, LR: 0.05, ProxMu: mu, ProxCenter: global.Params()}
		if _, err := m.Train(x, y, cfg, rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		var d float64
		for i, w := range m.Params() {
			d += math.Pow(float64(w-global.Params()[i]), 2)
		}
		return math.Sqrt(d)
	}
	free, prox := dist(0), dist(2)
	t.Logf("‖w − w_global‖: %.4f without proximal term, %.4f with mu = 2", free, prox)
	if !(prox < 0.5*free) {
		t.Errorf("proximal term did not pull toward the centre: %.4f vs %.4f", prox, free)
	}
}

func TestCloneIndependent(t *testing.T) {
	m, _ := New("cnn", Shape{1, 8, 8}, 3, rand.New(rand.NewPCG(1, 1)))
	c := m.Clone()
	if !slices.Equal(m.Params(), c.Params()) || m.Arch() != c.Arch() {
		t.Fatal("clone differs")
	}
	before := slices.Clone(m.Params())
	x, y := blobs(rand.New(rand.NewPCG(2, 2)), 20, Shape{1, 8, 8}, 3, 1)
	if _, err := c.Train(x, y, TrainConfig{Epochs: 1, BatchSize: 5, LR: 0.1}, rand.New(rand.NewPCG(3, 3))); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Params(), before) {
		t.Error("training the clone changed the original")
	}
	if slices.Equal(m.Params(), c.Params()) {
		t.Error("training did not change the clone")
	}
	if c.grads != nil {
		t.Error("plain SGD allocated a gradient vector it does not need")
	}
}

func TestEvaluateExact(t *testing.T) {
	in := Shape{1, 1, 5}
	m, _ := New("logreg", in, 4, rand.New(rand.NewPCG(1, 1)))
	clear(m.Params())
	// All-zero logits: loss is log 4 for every example and arg-max is class 0.
	x, y := randData(rand.New(rand.NewPCG(2, 2)), 1000, in, 4)
	zeros := 0
	for _, c := range y {
		if c == 0 {
			zeros++
		}
	}
	loss, acc, err := m.Evaluate(x, y)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(loss-math.Log(4)) > 1e-9 || acc != float64(zeros)/1000 {
		t.Errorf("loss %v accuracy %v, want %v and %v", loss, acc, math.Log(4), float64(zeros)/1000)
	}
}

func TestGatherCHWToHWC(t *testing.T) {
	in := Shape{3, 4, 5}
	m, _ := New("cnn", in, 2, rand.New(rand.NewPCG(1, 1)))
	x := make([]float32, 2*in.Size())
	for i := range x {
		x[i] = float32(i)
	}
	m.reserve(1)
	m.gather(x, []int{1})
	for c := 0; c < 3; c++ {
		for p := 0; p < 20; p++ {
			if got, want := m.acts[0][p*3+c], x[in.Size()+c*20+p]; got != want {
				t.Fatalf("channel %d pixel %d: %v, want %v", c, p, got, want)
			}
		}
	}
}

func TestTrainEvaluateErrors(t *testing.T) {
	in := Shape{1, 1, 4}
	m, _ := New("2nn", in, 3, rand.New(rand.NewPCG(1, 1)))
	x, y := randData(rand.New(rand.NewPCG(2, 2)), 10, in, 3)
	ok := TrainConfig{Epochs: 1, BatchSize: 4, LR: 0.1}
	rng := rand.New(rand.NewPCG(3, 3))
	nan := float32(math.NaN())
	withX := func(i int, v float32) []float32 { c := slices.Clone(x); c[i] = v; return c }
	cases := []struct {
		what string
		x    []float32
		y    []int32
		cfg  TrainConfig
		want string
	}{
		{"short x", x[:39], y, ok, "input values"},
		{"no examples", nil, nil, ok, "no examples"},
		{"label too big", x, append(slices.Clone(y[:9]), 3), ok, "outside [0, 3)"},
		{"negative label", x, append(slices.Clone(y[:9]), -1), ok, "outside [0, 3)"},
		{"NaN input", withX(17, nan), y, ok, "example 4"},
		{"Inf input", withX(3, float32(math.Inf(1))), y, ok, "+Inf"},
		{"zero epochs", x, y, TrainConfig{BatchSize: 4, LR: 0.1}, "epochs"},
		{"zero batch", x, y, TrainConfig{Epochs: 1, LR: 0.1}, "batch size"},
		{"zero lr", x, y, TrainConfig{Epochs: 1, BatchSize: 4}, "learning rate"},
		{"NaN lr", x, y, TrainConfig{Epochs: 1, BatchSize: 4, LR: nan}, "learning rate"},
		{"momentum 1", x, y, TrainConfig{Epochs: 1, BatchSize: 4, LR: 0.1, Momentum: 1}, "momentum"},
		{"negative decay", x, y, TrainConfig{Epochs: 1, BatchSize: 4, LR: 0.1, WeightDecay: -1}, "weight decay"},
		{"prox center missing", x, y, TrainConfig{Epochs: 1, BatchSize: 4, LR: 0.1, ProxMu: 0.1}, "proximal center"},
		{"diverges", x, y, TrainConfig{Epochs: 50, BatchSize: 2, LR: 1e30}, "diverged"},
	}
	for _, c := range cases {
		_, err := m.Clone().Train(c.x, c.y, c.cfg, rng)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Train error %v, want one containing %q", c.what, err, c.want)
		}
		if c.cfg.Epochs == 1 && c.cfg.BatchSize == 4 && c.cfg.LR == 0.1 && c.cfg.ProxMu == 0 && c.cfg.Momentum == 0 && c.cfg.WeightDecay == 0 {
			if _, _, err := m.Evaluate(c.x, c.y); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: Evaluate error %v, want one containing %q", c.what, err, c.want)
			}
		}
	}
	if _, err := m.Train(x, y, ok, nil); err == nil {
		t.Error("Train with nil rng: no error")
	}
	bad := m.Clone()
	bad.Params()[5] = float32(math.Inf(-1))
	if _, err := bad.Train(x, y, ok, rng); err == nil || !strings.Contains(err.Error(), "parameter 5 is -Inf") {
		t.Errorf("Train from a non-finite model: error %v", err)
	}
	if err := m.SetParams(make([]float32, 3)); err == nil {
		t.Error("SetParams with the wrong length: no error")
	}
}

// TestClonesConcurrently trains clones on separate goroutines (as the simulator's worker pool
// does) and checks each against the same training run done alone: clones share no state. Run
// under -race in CI.
func TestClonesConcurrently(t *testing.T) {
	for _, arch := range []string{"2nn", "cnn"} {
		in := Shape{1, 8, 8}
		global, _ := New(arch, in, 3, rand.New(rand.NewPCG(1, 1)))
		x, y := blobs(rand.New(rand.NewPCG(2, 2)), 60, in, 3, 1)
		cfg := TrainConfig{Epochs: 2, BatchSize: 7, LR: 0.05, Momentum: 0.5}
		const workers = 4
		want := make([][]float32, workers)
		for w := range workers {
			c := global.Clone()
			if _, err := c.Train(x, y, cfg, rand.New(rand.NewPCG(uint64(w), 9))); err != nil {
				t.Fatal(err)
			}
			want[w] = c.Params()
		}
		got := make([][]float32, workers)
		errs := make([]error, workers)
		done := make(chan int)
		for w := range workers {
			go func() {
				c := global.Clone()
				_, errs[w] = c.Train(x, y, cfg, rand.New(rand.NewPCG(uint64(w), 9)))
				got[w] = c.Params()
				done <- w
			}()
		}
		for range workers {
			<-done
		}
		for w := range workers {
			if errs[w] != nil {
				t.Fatal(errs[w])
			}
			if !slices.Equal(got[w], want[w]) {
				t.Errorf("%s worker %d: concurrent result differs from the same run alone", arch, w)
			}
		}
	}
}

func TestTensorsCoverParams(t *testing.T) {
	for arch, want := range map[string][]string{
		"logreg": {"fc1.weight [784 10]", "fc1.bias [10]"},
		"cnn":    {"conv1.weight [5 5 1 32]", "conv1.bias [32]", "conv2.weight [5 5 32 64]", "conv2.bias [64]", "fc1.weight [3136 512]", "fc1.bias [512]", "fc2.weight [512 10]", "fc2.bias [10]"},
	} {
		m, err := New(arch, Shape{1, 28, 28}, 10, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		next := 0
		for _, tn := range m.Tensors() {
			if tn.Offset != next {
				t.Fatalf("%s: %s at %d, want %d", arch, tn.Name, tn.Offset, next)
			}
			next += tn.Size()
			got = append(got, fmt.Sprint(tn.Name, " ", tn.Shape))
		}
		if next != m.NumParams() || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: tensors %v covering %d of %d parameters, want %v", arch, got, next, m.NumParams(), want)
		}
	}
}

func TestLogitsMatchEvaluate(t *testing.T) {
	m, err := New("2nn", Shape{1, 1, 5}, 3, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	n := 300
	x := make([]float32, n*5)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	logits, err := m.Logits(x)
	if err != nil || len(logits) != n*3 {
		t.Fatalf("logits: %d values, %v", len(logits), err)
	}
	y := make([]int32, n)
	for i := range y { // label every example with its argmax: accuracy must be 1
		for c := 1; c < 3; c++ {
			if logits[i*3+c] > logits[i*3+int(y[i])] {
				y[i] = int32(c)
			}
		}
	}
	if _, acc, err := m.Evaluate(x, y); err != nil || acc != 1 {
		t.Fatalf("evaluate on the argmax labels: accuracy %v, %v", acc, err)
	}
	if _, err := m.Logits(x[:7]); err == nil {
		t.Fatal("a partial example was accepted")
	}
}
