package nn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// Shape is the input shape of one example (channels, height, width); a flat vector is {1,1,D}.
// Inputs are given channel-major (CHW), as image datasets store them.
type Shape struct{ C, H, W int }

// Size is the number of values in one example of this shape.
func (s Shape) Size() int { return s.C * s.H * s.W }

// Model is a feed-forward network whose parameters live in one contiguous []float32; layers hold
// views into it. A Model is not safe for concurrent use; Clone one per goroutine.
type Model struct {
	arch    string
	in      Shape
	classes int
	layers  []layer
	// offsets[i] is where layer i's block starts in params; blocks are in layer order.
	offsets []int
	params  []float32
	grads   []float32 // same layout as params; nil until a path that needs it runs

	// Scratch, grown on demand by reserve and never shared between clones.
	batchCap int
	acts     [][]float32 // acts[0] is the input batch (HWC), acts[i+1] the output of layer i
	dacts    [][]float32
	velocity []float32
	perm     []int
	labels   []int32
	step     sgdInPlace
}

var architectures = map[string]func(in Shape, classes int) ([]layer, error){
	"logreg": func(in Shape, classes int) ([]layer, error) {
		return []layer{newDense(in.Size(), classes, false)}, nil
	},
	"2nn": func(in Shape, classes int) ([]layer, error) {
		return []layer{
			newDense(in.Size(), 200, true),
			newDense(200, 200, true),
			newDense(200, classes, false),
		}, nil
	},
	"cnn": func(in Shape, classes int) ([]layer, error) {
		if in.H < 4 || in.W < 4 {
			return nil, fmt.Errorf("cnn needs an image input of at least 4×4, got %d×%d×%d (channels×height×width); use logreg or 2nn for flat features", in.C, in.H, in.W)
		}
		c1 := newConv2d(in, 32, 5, true)
		p1 := &maxPool2{in: c1.outShape()}
		c2 := newConv2d(p1.outShape(), 64, 5, true)
		p2 := &maxPool2{in: c2.outShape()}
		flat := p2.outShape().Size()
		return []layer{
			c1, p1,
			c2, p2,
			newDense(flat, 512, true),
			newDense(512, classes, false),
		}, nil
	},
}

// Limits that keep a mistyped shape from becoming a multi-gigabyte allocation (and keep
// per-example indices within int32).
const (
	maxExampleSize = 1 << 24
	maxClasses     = 1 << 16
)

// Names lists the architectures New knows, sorted.
func Names() []string {
	names := make([]string, 0, len(architectures))
	for n := range architectures {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New builds the named architecture: "logreg" (dense in→classes), "2nn" (in-200-200-classes with
// ReLU; 199,210 parameters for 784 inputs and 10 classes, McMahan et al. 2017), "cnn" (5×5 conv
// 32 'same' + ReLU → 2×2 max-pool → 5×5 conv 64 'same' + ReLU → 2×2 max-pool → dense 512 + ReLU
// → dense classes; 1,663,370 parameters for 1×28×28 and 10 classes). Weights are drawn from rng
// (He-normal, biases zero), so a given seed gives the same model.
func New(name string, in Shape, classes int, rng *rand.Rand) (*Model, error) {
	build, ok := architectures[name]
	if !ok {
		return nil, fmt.Errorf("nn: unknown model %q (valid: %s)", name, strings.Join(Names(), ", "))
	}
	if in.C <= 0 || in.H <= 0 || in.W <= 0 {
		return nil, fmt.Errorf("nn: model %s: input shape %d×%d×%d must be positive", name, in.C, in.H, in.W)
	}
	if in.C > maxExampleSize || in.H > maxExampleSize || in.W > maxExampleSize ||
		int64(in.C)*int64(in.H)*int64(in.W) > maxExampleSize {
		return nil, fmt.Errorf("nn: model %s: input shape %d×%d×%d exceeds %d values per example", name, in.C, in.H, in.W, maxExampleSize)
	}
	if classes < 2 || classes > maxClasses {
		return nil, fmt.Errorf("nn: model %s: need between 2 and %d classes, got %d", name, maxClasses, classes)
	}
	if rng == nil {
		return nil, errors.New("nn: New needs a random source for the initial weights")
	}
	layers, err := build(in, classes)
	if err != nil {
		return nil, fmt.Errorf("nn: model %s: %w", name, err)
	}
	return newFromLayers(name, in, classes, layers, rng), nil
}

// newFromLayers assembles a model from layers whose shapes already chain, initialising the
// weights from rng.
func newFromLayers(name string, in Shape, classes int, layers []layer, rng *rand.Rand) *Model {
	m := &Model{arch: name, in: in, classes: classes, layers: layers}
	m.allocParams()
	for _, l := range m.layers {
		l.initParams(rng)
	}
	return m
}

// allocParams lays out the flat parameter vector and binds every layer to its block.
func (m *Model) allocParams() {
	total := 0
	m.offsets = make([]int, len(m.layers))
	for i, l := range m.layers {
		m.offsets[i] = total
		total += l.numParams()
	}
	m.params = make([]float32, total)
	m.bindLayers()
}

// bindLayers points every layer at its blocks of params and (when allocated) grads.
func (m *Model) bindLayers() {
	for i, l := range m.layers {
		o, n := m.offsets[i], l.numParams()
		var g []float32
		if m.grads != nil {
			g = m.grads[o : o+n : o+n]
		}
		l.bind(m.params[o:o+n:o+n], g)
	}
}

// ensureGrads allocates the gradient vector on first use: plain SGD applies its updates in place
// and never needs one, which halves the memory of a model (and of every Clone) on that path.
func (m *Model) ensureGrads() {
	if m.grads == nil {
		m.grads = make([]float32, len(m.params))
		m.bindLayers()
	}
}

// Arch is the architecture name the model was built with.
func (m *Model) Arch() string { return m.arch }

// InputShape is the shape of one input example.
func (m *Model) InputShape() Shape { return m.in }

// Classes is the number of output classes.
func (m *Model) Classes() int { return m.classes }

// Params is the flat parameter vector: a view, not a copy; writing to it changes the model.
func (m *Model) Params() []float32 { return m.params }

// NumParams is len(Params()).
func (m *Model) NumParams() int { return len(m.params) }

// LayerSizes is the parameter count of each layer that has parameters (its weights followed by
// its biases), in the order of the blocks in Params; the sizes sum to NumParams.
func (m *Model) LayerSizes() []int {
	var sizes []int
	for _, l := range m.layers {
		if n := l.numParams(); n > 0 {
			sizes = append(sizes, n)
		}
	}
	return sizes
}

// SetParams copies p into the model's parameters; p must have NumParams values, all finite.
func (m *Model) SetParams(p []float32) error {
	if len(p) != len(m.params) {
		return fmt.Errorf("nn: SetParams: got %d values, model %s has %d parameters", len(p), m.arch, len(m.params))
	}
	if i := firstNonFinite(p); i >= 0 {
		return fmt.Errorf("nn: SetParams: value %d is %v", i, p[i])
	}
	copy(m.params, p)
	return nil
}

// Clone returns a model with the same architecture and a copy of the parameters; it shares no
// memory with m, so each goroutine can train its own clone.
func (m *Model) Clone() *Model {
	c := &Model{arch: m.arch, in: m.in, classes: m.classes, layers: make([]layer, len(m.layers))}
	for i, l := range m.layers {
		c.layers[i] = l.cloneUnbound()
	}
	c.allocParams()
	copy(c.params, m.params)
	return c
}

// reserve makes the activation buffers and layer scratch big enough for batches of batch examples.
func (m *Model) reserve(batch int) {
	if batch <= m.batchCap {
		return
	}
	m.batchCap = batch
	m.acts = make([][]float32, len(m.layers)+1)
	m.dacts = make([][]float32, len(m.layers)+1)
	m.acts[0] = make([]float32, batch*m.in.Size())
	m.dacts[0] = nil // the input gradient is never needed
	for i, l := range m.layers {
		n := batch * l.outShape().Size()
		m.acts[i+1] = make([]float32, n)
		m.dacts[i+1] = make([]float32, n)
		l.reserve(batch)
	}
}

// transposeInput reports whether examples must be reordered from CHW to the HWC layout the
// convolutions use; flat models and single-channel images need no reordering.
func (m *Model) transposeInput() bool {
	_, isConv := m.layers[0].(*conv2d)
	return isConv && m.in.C > 1
}

// gather copies the examples idx of x into the input buffer (in HWC order for convolutions).
func (m *Model) gather(x []float32, idx []int) {
	d := m.in.Size()
	dst := m.acts[0]
	if !m.transposeInput() {
		for r, e := range idx {
			copy(dst[r*d:(r+1)*d], x[e*d:(e+1)*d])
		}
		return
	}
	c, hw := m.in.C, m.in.H*m.in.W
	for r, e := range idx {
		src, out := x[e*d:(e+1)*d], dst[r*d:(r+1)*d]
		for ch := 0; ch < c; ch++ {
			for p := 0; p < hw; p++ {
				out[p*c+ch] = src[ch*hw+p]
			}
		}
	}
}

// forward runs the network on the batch already in acts[0]; the logits end in acts[len(layers)].
func (m *Model) forward(batch int) {
	for i, l := range m.layers {
		l.forward(m.acts[i], m.acts[i+1], batch)
	}
}

func (m *Model) logits() []float32 { return m.acts[len(m.layers)] }

// Tensor is one named block of the flat parameter vector: a layer's weights or its biases.
// Dense weights ("fcN.weight") have shape [in, out] (row-major, x·W); convolution weights
// ("convN.weight") have shape [k, k, in channels, filters] (HWIO); biases have one value per
// output.
type Tensor struct {
	Name   string
	Shape  []int
	Offset int // index of the first value in Params
}

// Size is the number of values of the tensor.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Tensors lists the parameter blocks in the order of Params: for each layer with parameters,
// its weights then its biases. Convolutions are named conv1, conv2, … and dense layers fc1,
// fc2, … in order.
func (m *Model) Tensors() []Tensor {
	var out []Tensor
	convs, fcs := 0, 0
	for i, l := range m.layers {
		var name string
		var w []int
		var b int
		switch l := l.(type) {
		case *dense:
			fcs++
			name, w, b = fmt.Sprintf("fc%d", fcs), []int{l.in, l.out}, l.out
		case *conv2d:
			convs++
			name, w, b = fmt.Sprintf("conv%d", convs), []int{l.k, l.k, l.in.C, l.filters}, l.filters
		default:
			continue
		}
		wt := Tensor{Name: name + ".weight", Shape: w, Offset: m.offsets[i]}
		out = append(out, wt, Tensor{Name: name + ".bias", Shape: []int{b}, Offset: m.offsets[i] + wt.Size()})
	}
	return out
}

// Logits computes the model's outputs (n×Classes, before the softmax) for the n examples of x,
// in batches; x must hold whole examples of InputShape.
func (m *Model) Logits(x []float32) ([]float32, error) {
	d := m.in.Size()
	if len(x)%d != 0 {
		return nil, fmt.Errorf("nn: logits %s: %d values are not whole examples of %d", m.arch, len(x), d)
	}
	if i := firstNonFinite(x); i >= 0 {
		return nil, fmt.Errorf("nn: logits %s: input value %d is %v", m.arch, i, x[i])
	}
	n := len(x) / d
	const chunk = 256
	m.reserve(min(chunk, max(n, 1)))
	out := make([]float32, 0, n*m.classes)
	idx := make([]int, 0, chunk)
	for start := 0; start < n; start += chunk {
		b := min(chunk, n-start)
		idx = idx[:0]
		for r := range b {
			idx = append(idx, start+r)
		}
		m.gather(x, idx)
		m.forward(b)
		out = append(out, m.logits()[:b*m.classes]...)
	}
	return out, nil
}
