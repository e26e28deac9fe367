package report

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// modelMagic starts a saved model file: "SHOALMDL", then a little-endian uint32 format version.
// Version 2 (written now) follows with a uint32-length-prefixed JSON header (ModelInfo: the
// architecture, input shape, class names, parameter layout, feature scaling, the run's
// protection and ε), the uint64 parameter count and the parameters as little-endian float32.
// Version 1 (still read) had a uint16-length-prefixed architecture name instead of the header.
const modelMagic = "SHOALMDL"

const modelVersion = 2

// maxModelParams bounds what ReadModel accepts (4 GiB of float32), so a corrupt header cannot
// make it allocate without limit; maxModelHeader bounds the JSON header likewise.
const (
	maxModelParams = 1 << 30
	maxModelHeader = 64 << 20
)

// ModelInfo describes a saved model: enough to rebuild it (nn.New(Arch, Input, len(Classes))),
// to name its outputs, to scale inputs as in training, and to say how it was trained.
type ModelInfo struct {
	Arch string `json:"arch"`
	// Trainer is the name an external trainer (--trainer) gave in its handshake; its model is
	// Arch "external", and Tensors are the trainer's own names and shapes.
	Trainer string   `json:"trainer,omitempty"`
	Input   [3]int   `json:"input_shape"` // channels, height, width of one example
	Classes []string `json:"classes"`     // output i is Classes[i]
	// Tensors lays out the parameter vector by layer (nn.Model.Tensors).
	Tensors []Tensor        `json:"tensors"`
	Scaling *FeatureScaling `json:"feature_scaling,omitempty"`
	Dataset string          `json:"dataset,omitempty"`
	// Protection is the run's protection statement (secure sum, DP), Epsilon and Delta the
	// (ε, δ) it spent under DP.
	Protection []string `json:"protection,omitempty"`
	Epsilon    *float64 `json:"epsilon,omitempty"`
	Delta      *float64 `json:"delta,omitempty"`
	Rounds     int      `json:"rounds,omitempty"`
	Accuracy   float64  `json:"test_accuracy,omitempty"`
}

// Tensor is one named block of the parameter vector, in nn's layout (dense weights [in, out],
// convolution weights [k, k, in channels, filters], biases [out]).
type Tensor struct {
	Name   string `json:"name"`
	Shape  []int  `json:"shape"`
	Offset int    `json:"offset"`
}

// Size is the number of values of the tensor, or -1 if the shape is malformed (a negative
// dimension, or more than maxModelParams values).
func (t Tensor) Size() int { return shapeSize(t.Shape) }

// shapeSize is the product of shape, or -1 if a dimension is negative or the product exceeds
// maxModelParams: shapes come from files, and a wrapped product must not pass for a small one.
func shapeSize(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && n > maxModelParams/d) {
			return -1
		}
		n *= d
	}
	return n
}

// FeatureScaling is the input standardisation x' = (x − Mean)·Scale applied in training.
type FeatureScaling struct {
	Mean  []float32 `json:"mean"`
	Scale []float32 `json:"scale"`
}

// Model is a saved model: its description and parameters.
type Model struct {
	Info   ModelInfo
	Params []float32
}

// Check verifies that the layout covers the parameters exactly, block after block, and that the
// scaling fits the input.
func (m *Model) Check() error {
	next := 0
	for _, t := range m.Info.Tensors {
		if t.Offset != next || t.Size() <= 0 {
			return fmt.Errorf("model layout: tensor %s at %d (size %d), want offset %d", t.Name, t.Offset, t.Size(), next)
		}
		next += t.Size()
	}
	if len(m.Info.Tensors) > 0 && next != len(m.Params) {
		return fmt.Errorf("model layout covers %d values, the model has %d parameters", next, len(m.Params))
	}
	d := shapeSize(m.Info.Input[:])
	if d < 0 {
		return fmt.Errorf("model input shape %v is malformed", m.Info.Input)
	}
	if s := m.Info.Scaling; s != nil {
		if len(s.Mean) != d || len(s.Scale) != d {
			return fmt.Errorf("model feature scaling has %d/%d values for %d inputs", len(s.Mean), len(s.Scale), d)
		}
	}
	return nil
}

// Tensor returns the values of the named tensor (a view into Params).
func (m *Model) Tensor(t Tensor) []float32 { return m.Params[t.Offset : t.Offset+t.Size()] }

// WriteModel saves params of the named architecture to dir/name, with no description beyond
// the architecture (WriteModelFile writes a full one).
func WriteModel(dir, name, arch string, params []float32) error {
	return WriteModelFile(dir, name, &Model{Info: ModelInfo{Arch: arch}, Params: params})
}

// WriteModelFile saves m to dir/name in the current format.
func WriteModelFile(dir, name string, m *Model) error {
	if err := m.Check(); err != nil {
		return err
	}
	header, err := json.Marshal(m.Info)
	if err != nil {
		return fmt.Errorf("model header: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(modelMagic) + 16 + len(header) + 4*len(m.Params))
	buf.WriteString(modelMagic)
	_ = binary.Write(&buf, binary.LittleEndian, uint32(modelVersion))
	_ = binary.Write(&buf, binary.LittleEndian, uint32(len(header)))
	buf.Write(header)
	_ = binary.Write(&buf, binary.LittleEndian, uint64(len(m.Params)))
	buf.Write(float32Bytes(m.Params))
	return writeFile(filepath.Join(dir, name), buf.Bytes())
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, p := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(p))
	}
	return b
}

// ReadModel reads a file written by WriteModel.
func ReadModel(path string) (arch string, params []float32, err error) {
	m, err := ReadModelFile(path)
	if err != nil {
		return "", nil, err
	}
	return m.Info.Arch, m.Params, nil
}

// ReadModelFile reads a model file of either version (a version-1 file's description holds
// only the architecture).
func ReadModelFile(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open model: %w", err)
	}
	defer f.Close()
	m, err := DecodeModelFile(f)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return m, nil
}

// DecodeModel reads the model format from r, rejecting anything malformed.
func DecodeModel(r io.Reader) (arch string, params []float32, err error) {
	m, err := DecodeModelFile(r)
	if err != nil {
		return "", nil, err
	}
	return m.Info.Arch, m.Params, nil
}

// DecodeModelFile reads either version of the model format from r, rejecting anything
// malformed.
func DecodeModelFile(r io.Reader) (*Model, error) {
	magic := make([]byte, len(modelMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != modelMagic {
		return nil, errors.New("not a Shoal model file (bad magic)")
	}
	var version uint32
	if err := binary.Read(r, binary.LittleEndian, &version); err != nil {
		return nil, fmt.Errorf("model header: %w", err)
	}
	m := &Model{}
	switch version {
	case 1:
		var nameLen uint16
		if err := binary.Read(r, binary.LittleEndian, &nameLen); err != nil {
			return nil, fmt.Errorf("model header: %w", err)
		}
		name := make([]byte, nameLen)
		if _, err := io.ReadFull(r, name); err != nil {
			return nil, fmt.Errorf("model header: %w", err)
		}
		m.Info.Arch = string(name)
	case 2:
		var n uint32
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			return nil, fmt.Errorf("model header: %w", err)
		}
		if n > maxModelHeader {
			return nil, fmt.Errorf("model header of %d bytes, more than the %d accepted", n, maxModelHeader)
		}
		header := make([]byte, n)
		if _, err := io.ReadFull(r, header); err != nil {
			return nil, fmt.Errorf("model header: %w", err)
		}
		if err := json.Unmarshal(header, &m.Info); err != nil {
			return nil, fmt.Errorf("model header: %w", err)
		}
	default:
		return nil, fmt.Errorf("model format version %d, this build reads 1 and %d", version, modelVersion)
	}
	var n uint64
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("model header: %w", err)
	}
	if n > maxModelParams {
		return nil, fmt.Errorf("model claims %d parameters, more than the %d accepted", n, maxModelParams)
	}
	params, err := readParams(r, int(n))
	if err != nil {
		return nil, err
	}
	m.Params = params
	if err := m.Check(); err != nil {
		return nil, err
	}
	return m, nil
}

// readParams reads n little-endian float32 values in blocks, so that memory grows with the
// bytes actually present rather than with the count a (possibly truncated) file claims.
func readParams(r io.Reader, n int) ([]float32, error) {
	const block = 1 << 20
	params := make([]float32, 0, min(n, block))
	buf := make([]byte, 4*min(n, block))
	for len(params) < n {
		k := min(n-len(params), block)
		if _, err := io.ReadFull(r, buf[:4*k]); err != nil {
			return nil, fmt.Errorf("model parameters truncated: %w", err)
		}
		for i := range k {
			params = append(params, math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:])))
		}
	}
	return params, nil
}
