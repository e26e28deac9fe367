package nn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// TrainConfig configures one call of Train.
type TrainConfig struct {
	Epochs, BatchSize         int
	LR, Momentum, WeightDecay float32
	ProxMu                    float32   // FedProx: adds ProxMu/2·‖w − ProxCenter‖² to the loss when > 0
	ProxCenter                []float32 // the global model at the start of the round (len NumParams)
}

func (c *TrainConfig) validate(numParams int) error {
	switch {
	case c.Epochs <= 0:
		return fmt.Errorf("epochs must be positive, got %d", c.Epochs)
	case c.BatchSize <= 0:
		return fmt.Errorf("batch size must be positive, got %d", c.BatchSize)
	case !(c.LR > 0) || math.IsInf(float64(c.LR), 0):
		return fmt.Errorf("learning rate must be positive and finite, got %v", c.LR)
	case !(c.Momentum >= 0 && c.Momentum < 1):
		return fmt.Errorf("momentum must be in [0, 1), got %v", c.Momentum)
	case !(c.WeightDecay >= 0) || math.IsInf(float64(c.WeightDecay), 0):
		return fmt.Errorf("weight decay must be non-negative and finite, got %v", c.WeightDecay)
	case !(c.ProxMu >= 0) || math.IsInf(float64(c.ProxMu), 0):
		return fmt.Errorf("proximal mu must be non-negative and finite, got %v", c.ProxMu)
	}
	if c.ProxMu > 0 {
		if len(c.ProxCenter) != numParams {
			return fmt.Errorf("proximal center has %d values, model has %d parameters", len(c.ProxCenter), numParams)
		}
		if i := firstNonFinite(c.ProxCenter); i >= 0 {
			return fmt.Errorf("proximal center value %d is %v", i, c.ProxCenter[i])
		}
	}
	return nil
}

// checkData validates a dataset of len(y) examples against the model's input size and classes.
func (m *Model) checkData(x []float32, y []int32) error {
	n, d := len(y), m.in.Size()
	if n == 0 {
		return errors.New("no examples")
	}
	if len(x) != n*d {
		return fmt.Errorf("%d labels need %d×%d = %d input values, got %d", n, n, d, n*d, len(x))
	}
	for i, c := range y {
		if c < 0 || int(c) >= m.classes {
			return fmt.Errorf("label %d of example %d is outside [0, %d)", c, i, m.classes)
		}
	}
	if i := firstNonFinite(x); i >= 0 {
		return fmt.Errorf("input value %d (example %d) is %v", i, i/d, x[i])
	}
	return nil
}

// firstNonFinite is the index of the first NaN or ±Inf in v, or -1.
func firstNonFinite(v []float32) int {
	if n8 := len(v) &^ 7; useAsm && n8 > 0 && !anyNonFiniteAVX(n8, &v[0]) {
		v8 := v[n8:] // the vector scan cleared the head; only the tail is left
		for i, f := range v8 {
			if f-f != 0 {
				return n8 + i
			}
		}
		return -1
	}
	for i, f := range v {
		// f-f is NaN exactly when f is NaN or ±Inf; one comparison per element.
		if f-f != 0 {
			return i
		}
	}
	return -1
}

// Train runs minibatch SGD (momentum and weight decay, momentum state fresh for each call) over
// the n = len(y) examples in x (n×in row-major, float32), shuffled each epoch with rng. The last
// batch of an epoch may be smaller. Returns the mean training cross-entropy over the last epoch
// (without the proximal term). Errors, before any training, on mismatched sizes, labels out of
// range, non-finite inputs or starting parameters, bad config (non-positive batch/epochs/lr);
// and on a non-finite loss (diverged), after which the parameters are unusable and should be
// reset by the caller.
func (m *Model) Train(x []float32, y []int32, cfg TrainConfig, rng *rand.Rand) (float64, error) {
	if err := cfg.validate(len(m.params)); err != nil {
		return 0, fmt.Errorf("nn: train %s: %w", m.arch, err)
	}
	if err := m.checkData(x, y); err != nil {
		return 0, fmt.Errorf("nn: train %s: %w", m.arch, err)
	}
	if rng == nil {
		return 0, fmt.Errorf("nn: train %s: need a random source for shuffling", m.arch)
	}
	if i := firstNonFinite(m.params); i >= 0 {
		return 0, fmt.Errorf("nn: train %s: the starting model is not finite: parameter %d is %v", m.arch, i, m.params[i])
	}
	n := len(y)
	bs := min(cfg.BatchSize, n)
	m.reserve(bs)
	if cfg.Momentum > 0 {
		m.ensureGrads()
		if len(m.velocity) != len(m.params) {
			m.velocity = make([]float32, len(m.params))
		}
		clear(m.velocity)
	}
	if cap(m.perm) < n {
		m.perm = make([]int, n)
	}
	perm := m.perm[:n]
	for i := range perm {
		perm[i] = i
	}
	if cap(m.labels) < bs {
		m.labels = make([]int32, bs)
	}
	labels := m.labels[:bs]
	// Without momentum the update is applied in place during backpropagation (see sgdInPlace).
	inPlace := cfg.Momentum == 0
	gradScale := float32(1)
	if inPlace {
		gradScale = -cfg.LR
	}

	var epochLoss float64
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		epochLoss = 0
		for start := 0; start < n; start += bs {
			idx := perm[start:min(start+bs, n)]
			b := len(idx)
			m.gather(x, idx)
			for r, e := range idx {
				labels[r] = y[e]
			}
			m.forward(b)
			top := len(m.layers)
			loss, _ := softmaxCrossEntropy(m.acts[top][:b*m.classes], labels[:b], m.classes, m.dacts[top], gradScale)
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return 0, fmt.Errorf("nn: train %s: diverged: loss is %v at epoch %d, step %d (lower the learning rate)", m.arch, loss, epoch+1, start/bs+1)
			}
			epochLoss += loss
			m.backwardAndStep(b, &cfg, inPlace)
		}
	}
	return epochLoss / float64(n), nil
}

// sgdInPlace applies plain SGD (no momentum) without a gradient buffer: the loss gradient that
// enters backpropagation is pre-scaled by −lr, so the weight gradient each layer computes is
// already its update and is added straight into the weights, while the layer's block is hot in
// cache. Weight decay and the proximal pull depend on the weights before the step, so a layer
// calls decay after its input gradient (which needs the old weights too) and before the update.
type sgdInPlace struct {
	lr, wd, mu float32
	block      []float32 // the layer's parameters
	center     []float32 // the proximal centre for block; nil when mu = 0
}

// decay applies w ← w − lr·(wd·w + mu·(w − c)) = (1 − lr·(wd + mu))·w + lr·mu·c.
func (s *sgdInPlace) decay() {
	switch {
	case s.center != nil:
		scaleAdd(1-s.lr*(s.wd+s.mu), s.lr*s.mu, s.block, s.center)
	case s.wd != 0:
		axpy(-s.lr*s.wd, s.block, s.block)
	}
}

// backwardAndStep backpropagates the loss gradient in dacts[top] (scaled by −lr when inPlace)
// and updates each layer's parameters right after its gradient is known.
func (m *Model) backwardAndStep(batch int, cfg *TrainConfig, inPlace bool) {
	for i := len(m.layers) - 1; i >= 0; i-- {
		l := m.layers[i]
		np := l.numParams()
		o := m.offsets[i]
		var step *sgdInPlace
		if inPlace && np > 0 {
			m.step = sgdInPlace{lr: cfg.LR, wd: cfg.WeightDecay, mu: cfg.ProxMu, block: m.params[o : o+np]}
			if cfg.ProxMu > 0 {
				m.step.center = cfg.ProxCenter[o : o+np]
			}
			step = &m.step
		}
		l.backward(m.acts[i], m.acts[i+1], m.dacts[i+1], m.dacts[i], batch, step)
		if inPlace || np == 0 {
			continue
		}
		w, g := m.params[o:o+np], m.grads[o:o+np]
		// g += wd·w + mu·(w − c), then the momentum step.
		if cfg.WeightDecay != 0 {
			axpy(cfg.WeightDecay, w, g)
		}
		if cfg.ProxMu > 0 {
			axpy(cfg.ProxMu, w, g)
			axpy(-cfg.ProxMu, cfg.ProxCenter[o:o+np], g)
		}
		momentumStep(cfg.LR, cfg.Momentum, w, g, m.velocity[o:o+np])
	}
}

// softmaxCrossEntropy returns the summed cross-entropy of the rows of logits (batch × classes)
// against labels and the number of rows whose arg-max is the label. If grad is not nil it
// receives scale times the gradient of the mean loss, scale·(softmax − onehot)/batch. Computed
// in float64 with the maximum subtracted, so large logits cannot overflow.
func softmaxCrossEntropy(logits []float32, labels []int32, classes int, grad []float32, scale float32) (float64, int) {
	batch := len(labels)
	inv := float64(scale) / float64(batch)
	var total float64
	correct := 0
	for r := 0; r < batch; r++ {
		row := logits[r*classes : (r+1)*classes]
		best, arg := row[0], 0
		for j, v := range row {
			if v > best {
				best, arg = v, j
			}
		}
		if arg == int(labels[r]) {
			correct++
		}
		mx := float64(best)
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(sum)
		total += lse - float64(row[labels[r]])
		if grad != nil {
			g := grad[r*classes : (r+1)*classes]
			for j, v := range row {
				g[j] = float32(math.Exp(float64(v)-lse) * inv)
			}
			g[labels[r]] -= float32(inv)
		}
	}
	return total, correct
}

// evalBudget bounds the activation memory Evaluate uses per chunk (in float32 values).
const evalBudget = 1 << 21

// Evaluate returns the mean cross-entropy loss and the accuracy over the examples, in batches.
// Errors only on bad input; a model with non-finite parameters gives a non-finite loss.
func (m *Model) Evaluate(x []float32, y []int32) (loss, accuracy float64, err error) {
	if err := m.checkData(x, y); err != nil {
		return 0, 0, fmt.Errorf("nn: evaluate %s: %w", m.arch, err)
	}
	perExample := m.in.Size()
	for _, l := range m.layers {
		perExample += l.outShape().Size()
	}
	chunk := max(m.batchCap, min(256, evalBudget/perExample), 1)
	m.reserve(chunk)
	n := len(y)
	if cap(m.perm) < chunk {
		m.perm = make([]int, chunk)
	}
	idx := m.perm[:chunk]
	var total float64
	correct := 0
	for start := 0; start < n; start += chunk {
		b := min(chunk, n-start)
		for r := 0; r < b; r++ {
			idx[r] = start + r
		}
		m.gather(x, idx[:b])
		m.forward(b)
		l, c := softmaxCrossEntropy(m.logits()[:b*m.classes], y[start:start+b], m.classes, nil, 1)
		total += l
		correct += c
	}
	return total / float64(n), float64(correct) / float64(n), nil
}

// forwardAll runs the forward pass over all the examples as one batch and returns their number.
func (m *Model) forwardAll(x []float32, y []int32) int {
	n := len(y)
	m.reserve(n)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	m.gather(x, idx)
	m.forward(n)
	return n
}

// gradient computes the mean loss over all the examples as one batch and leaves its gradient in
// m.grads, without updating the parameters (for gradient checks and diagnostics).
func (m *Model) gradient(x []float32, y []int32) float64 {
	m.ensureGrads()
	n := m.forwardAll(x, y)
	top := len(m.layers)
	loss, _ := softmaxCrossEntropy(m.acts[top][:n*m.classes], y, m.classes, m.dacts[top], 1)
	for i := len(m.layers) - 1; i >= 0; i-- {
		m.layers[i].backward(m.acts[i], m.acts[i+1], m.dacts[i+1], m.dacts[i], n, nil)
	}
	return loss / float64(n)
}

// meanLoss is the mean loss over all the examples as one batch, without touching gradients.
func (m *Model) meanLoss(x []float32, y []int32) float64 {
	n := m.forwardAll(x, y)
	loss, _ := softmaxCrossEntropy(m.logits()[:n*m.classes], y, m.classes, nil, 1)
	return loss / float64(n)
}
