package report

import (
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX field numbers and enums used below (onnx.proto, IR version 7, opset 13).
const (
	onnxIRVersion = 7
	onnxOpset     = 13
	onnxFloat     = 1 // TensorProto.DataType FLOAT
	onnxAttrInts  = 7 // AttributeProto.AttributeType INTS
)

// pbuf appends protobuf fields by hand: the handful of ONNX messages below need no generated
// code.
type pbuf []byte

func (b *pbuf) bytes(num protowire.Number, v []byte) {
	*b = protowire.AppendTag(*b, num, protowire.BytesType)
	*b = protowire.AppendBytes(*b, v)
}
func (b *pbuf) str(num protowire.Number, s string) { b.bytes(num, []byte(s)) }
func (b *pbuf) varint(num protowire.Number, v int64) {
	*b = protowire.AppendTag(*b, num, protowire.VarintType)
	*b = protowire.AppendVarint(*b, uint64(v))
}

// onnxGraph accumulates the nodes and initializers of a graph.
type onnxGraph struct {
	nodes, inits [][]byte
	n            int
}

// tensor adds an initializer (float32, row-major) and returns its name.
func (g *onnxGraph) tensor(name string, dims []int, v []float32) string {
	var t pbuf
	for _, d := range dims {
		t.varint(1, int64(d))
	}
	t.varint(2, onnxFloat)
	t.str(8, name)
	t.bytes(9, float32Bytes(v))
	g.inits = append(g.inits, t)
	return name
}

// node adds a node of op on inputs with int-list attributes and returns its output's name.
func (g *onnxGraph) node(op string, attrs map[string][]int, inputs ...string) string {
	g.n++
	out := fmt.Sprintf("%s_%d", strings.ToLower(op), g.n)
	var n pbuf
	for _, in := range inputs {
		n.str(1, in)
	}
	n.str(2, out)
	n.str(3, out)
	n.str(4, op)
	for _, name := range []string{"kernel_shape", "pads", "strides", "perm"} {
		v, ok := attrs[name]
		if !ok {
			continue
		}
		var a pbuf
		a.str(1, name)
		for _, x := range v {
			a.varint(8, int64(x))
		}
		a.varint(20, onnxAttrInts)
		n.bytes(5, a)
	}
	g.nodes = append(g.nodes, n)
	return out
}

// valueInfo is a float tensor's ValueInfoProto with a symbolic batch dimension "N" first.
func valueInfo(name string, dims ...int) []byte {
	var shape pbuf
	var batch pbuf
	batch.str(2, "N")
	shape.bytes(1, batch)
	for _, d := range dims {
		var dim pbuf
		dim.varint(1, int64(d))
		shape.bytes(1, dim)
	}
	var tt pbuf
	tt.varint(1, onnxFloat)
	tt.bytes(2, shape)
	var typ pbuf
	typ.bytes(1, tt)
	var vi pbuf
	vi.str(1, name)
	vi.bytes(2, typ)
	return vi
}

// WriteONNX writes m as an ONNX model (IR 7, opset 13) that onnxruntime runs: input "input"
// (N×C×H×W for the convolutional model, N×features for the dense ones, raw features: the
// stored scaling is the graph's first two nodes), output "logits" (N×classes, before the
// softmax). Convolution weights are transposed to ONNX's OIHW, and the activations flattened
// in Shoal's HWC order before the first dense layer.
func WriteONNX(w io.Writer, m *Model) error {
	if err := m.Check(); err != nil {
		return err
	}
	if m.Info.Trainer != "" {
		return fmt.Errorf("onnx: the model of external trainer %q has no graph Shoal knows (export safetensors or npz)", m.Info.Trainer)
	}
	in := m.Info.Input
	g := &onnxGraph{}
	ts := m.Info.Tensors
	if len(ts) == 0 || len(ts)%2 != 0 {
		return fmt.Errorf("onnx: model %s has no weight/bias layout", m.Info.Arch)
	}
	conv := strings.HasPrefix(ts[0].Name, "conv")
	inputDims := []int{in[0] * in[1] * in[2]}
	if conv {
		inputDims = []int{in[0], in[1], in[2]}
	}
	x := "input"
	if s := m.Info.Scaling; s != nil {
		x = g.node("Sub", nil, x, g.tensor("feature_mean", inputDims, s.Mean))
		x = g.node("Mul", nil, x, g.tensor("feature_scale", inputDims, s.Scale))
	}
	afterConv := false
	for i := 0; i < len(ts); i += 2 {
		wt, bt := ts[i], ts[i+1]
		last := i+2 == len(ts)
		switch {
		case strings.HasPrefix(wt.Name, "conv") && len(wt.Shape) == 4:
			k, c, f := wt.Shape[0], wt.Shape[2], wt.Shape[3]
			oihw := hwioToOIHW(m.Tensor(wt), k, c, f)
			x = g.node("Conv", map[string][]int{"kernel_shape": {k, k}, "pads": {k / 2, k / 2, k / 2, k / 2}},
				x, g.tensor(wt.Name, []int{f, c, k, k}, oihw), g.tensor(bt.Name, bt.Shape, m.Tensor(bt)))
			x = g.node("Relu", nil, x)
			x = g.node("MaxPool", map[string][]int{"kernel_shape": {2, 2}, "strides": {2, 2}}, x)
			afterConv = true
		case strings.HasPrefix(wt.Name, "fc") && len(wt.Shape) == 2:
			if afterConv {
				x = g.node("Transpose", map[string][]int{"perm": {0, 2, 3, 1}}, x) // NCHW → NHWC, Shoal's order
				x = g.node("Flatten", nil, x)
				afterConv = false
			}
			x = g.node("MatMul", nil, x, g.tensor(wt.Name, wt.Shape, m.Tensor(wt)))
			x = g.node("Add", nil, x, g.tensor(bt.Name, bt.Shape, m.Tensor(bt)))
			if !last {
				x = g.node("Relu", nil, x)
			}
		default:
			return fmt.Errorf("onnx: tensor %s of shape %v is not a layer of the built-in models", wt.Name, wt.Shape)
		}
	}
	// The last node's output is renamed "logits" by an Identity node.
	var id pbuf
	id.str(1, x)
	id.str(2, "logits")
	id.str(3, "logits")
	id.str(4, "Identity")
	g.nodes = append(g.nodes, id)

	var graph pbuf
	for _, n := range g.nodes {
		graph.bytes(1, n)
	}
	graph.str(2, "shoal_"+m.Info.Arch)
	for _, t := range g.inits {
		graph.bytes(5, t)
	}
	graph.bytes(11, valueInfo("input", inputDims...))
	graph.bytes(12, valueInfo("logits", len(m.Info.Classes)))
	var opset pbuf
	opset.str(1, "")
	opset.varint(2, onnxOpset)
	var model pbuf
	model.varint(1, onnxIRVersion)
	model.str(2, "shoal")
	model.bytes(7, graph)
	model.bytes(8, opset)
	if _, err := w.Write(model); err != nil {
		return fmt.Errorf("write onnx: %w", err)
	}
	return nil
}

// hwioToOIHW reorders convolution weights from Shoal's [k, k, c, f] to ONNX's [f, c, k, k].
func hwioToOIHW(w []float32, k, c, f int) []float32 {
	out := make([]float32, len(w))
	for ky := range k {
		for kx := range k {
			for ci := range c {
				for fo := range f {
					out[((fo*c+ci)*k+ky)*k+kx] = w[((ky*k+kx)*c+ci)*f+fo]
				}
			}
		}
	}
	return out
}
