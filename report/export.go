package report

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// WriteSafetensors writes m's weights in the safetensors format (Hugging Face): an 8-byte
// little-endian header length, a JSON header naming each tensor ("fc1.weight", …) with its
// dtype (F32), shape and byte range, then the data. The header's __metadata__ holds the
// model's description (ModelInfo without the layout) as JSON strings.
func WriteSafetensors(w io.Writer, m *Model) error {
	if err := m.Check(); err != nil {
		return err
	}
	header := map[string]any{}
	meta, err := safetensorsMetadata(m.Info)
	if err != nil {
		return err
	}
	header["__metadata__"] = meta
	var data bytes.Buffer
	for _, t := range m.Info.Tensors {
		start := data.Len()
		data.Write(float32Bytes(m.Tensor(t)))
		header[t.Name] = map[string]any{"dtype": "F32", "shape": t.Shape, "data_offsets": []int{start, data.Len()}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("safetensors header: %w", err)
	}
	if pad := (8 - len(h)%8) % 8; pad > 0 { // the data starts 8-byte aligned
		h = append(h, bytes.Repeat([]byte{' '}, pad)...)
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	for _, b := range [][]byte{n[:], h, data.Bytes()} {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write safetensors: %w", err)
		}
	}
	return nil
}

// safetensorsMetadata is the description as the string→string map the format allows.
func safetensorsMetadata(info ModelInfo) (map[string]string, error) {
	info.Tensors = nil
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("safetensors metadata: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("safetensors metadata: %w", err)
	}
	meta := map[string]string{"format": "pt", "producer": "shoal"}
	for k, v := range fields {
		var s string
		if json.Unmarshal(v, &s) == nil {
			meta[k] = s
			continue
		}
		meta[k] = string(v)
	}
	return meta, nil
}

// ReadSafetensors reads a file of F32 tensors written in the safetensors format: the tensors
// by name, their shapes, and the metadata.
func ReadSafetensors(r io.Reader) (tensors map[string][]float32, shapes map[string][]int, meta map[string]string, err error) {
	var n uint64
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return nil, nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	if n > maxModelHeader {
		return nil, nil, nil, fmt.Errorf("safetensors: header of %d bytes", n)
	}
	h := make([]byte, n)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, nil, nil, fmt.Errorf("safetensors header: %w", err)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(h, &header); err != nil {
		return nil, nil, nil, fmt.Errorf("safetensors header: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(r, 4*maxModelParams))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("safetensors data: %w", err)
	}
	tensors, shapes = map[string][]float32{}, map[string][]int{}
	for name, raw := range header {
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, nil, fmt.Errorf("safetensors metadata: %w", err)
			}
			continue
		}
		var t struct {
			Dtype   string `json:"dtype"`
			Shape   []int  `json:"shape"`
			Offsets [2]int `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, nil, nil, fmt.Errorf("safetensors tensor %s: %w", name, err)
		}
		size := (&Tensor{Shape: t.Shape}).Size()
		if t.Dtype != "F32" || size < 0 || t.Offsets[0] < 0 || t.Offsets[0] > t.Offsets[1] || t.Offsets[1] > len(data) || t.Offsets[1]-t.Offsets[0] != 4*size {
			return nil, nil, nil, fmt.Errorf("safetensors tensor %s: dtype %s, shape %v, bytes %v of %d", name, t.Dtype, t.Shape, t.Offsets, len(data))
		}
		tensors[name], shapes[name] = bytesFloat32(data[t.Offsets[0]:t.Offsets[1]]), t.Shape
	}
	return tensors, shapes, meta, nil
}

func bytesFloat32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// WriteNPZ writes m as a NumPy .npz archive (numpy.load reads it): one float32 array per
// tensor ("fc1.weight.npy", …), plus "feature_scaling.mean.npy" and "…scale.npy" when the
// model has a scaling, and "classes.npy" is left out (NumPy string arrays need pickling:
// the class names are in the archive's comment as JSON).
func WriteNPZ(w io.Writer, m *Model) error {
	if err := m.Check(); err != nil {
		return err
	}
	z := zip.NewWriter(w)
	add := func(name string, shape []int, v []float32) error {
		f, err := z.CreateHeader(&zip.FileHeader{Name: name + ".npy", Method: zip.Store})
		if err != nil {
			return err
		}
		if _, err := f.Write(npyHeader(shape)); err != nil {
			return err
		}
		_, err = f.Write(float32Bytes(v))
		return err
	}
	for _, t := range m.Info.Tensors {
		if err := add(t.Name, t.Shape, m.Tensor(t)); err != nil {
			return fmt.Errorf("write npz: %w", err)
		}
	}
	if s := m.Info.Scaling; s != nil {
		if err := add("feature_scaling.mean", []int{len(s.Mean)}, s.Mean); err != nil {
			return fmt.Errorf("write npz: %w", err)
		}
		if err := add("feature_scaling.scale", []int{len(s.Scale)}, s.Scale); err != nil {
			return fmt.Errorf("write npz: %w", err)
		}
	}
	info := m.Info
	info.Tensors = nil
	comment, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("write npz: %w", err)
	}
	if len(comment) < 65535 {
		if err := z.SetComment(string(comment)); err != nil {
			return fmt.Errorf("write npz: %w", err)
		}
	}
	if err := z.Close(); err != nil {
		return fmt.Errorf("write npz: %w", err)
	}
	return nil
}

// npyHeader is the NPY 1.0 header of a little-endian float32 C-order array of shape: magic,
// version, header length, and the dict padded with spaces to a multiple of 64 bytes.
func npyHeader(shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	dict := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	total := 10 + len(dict) + 1
	dict += strings.Repeat(" ", (64-total%64)%64) + "\n"
	h := []byte("\x93NUMPY\x01\x00")
	h = binary.LittleEndian.AppendUint16(h, uint16(len(dict)))
	return append(h, dict...)
}

// ReadNPZ reads the float32 arrays of an archive written by WriteNPZ: values and shapes by
// array name (without ".npy").
func ReadNPZ(r io.ReaderAt, size int64) (arrays map[string][]float32, shapes map[string][]int, err error) {
	z, err := zip.NewReader(r, size)
	if err != nil {
		return nil, nil, fmt.Errorf("npz: %w", err)
	}
	arrays, shapes = map[string][]float32{}, map[string][]int{}
	for _, f := range z.File {
		rc, err := f.Open()
		if err != nil {
			return nil, nil, fmt.Errorf("npz %s: %w", f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, 4*maxModelParams+1<<16))
		rc.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("npz %s: %w", f.Name, err)
		}
		shape, data, err := parseNPY(b)
		if err != nil {
			return nil, nil, fmt.Errorf("npz %s: %w", f.Name, err)
		}
		name := strings.TrimSuffix(f.Name, ".npy")
		arrays[name], shapes[name] = data, shape
	}
	return arrays, shapes, nil
}

func parseNPY(b []byte) ([]int, []float32, error) {
	if len(b) < 10 || string(b[:8]) != "\x93NUMPY\x01\x00" {
		return nil, nil, errors.New("not an NPY 1.0 array")
	}
	n := int(binary.LittleEndian.Uint16(b[8:10]))
	if 10+n > len(b) {
		return nil, nil, errors.New("NPY header truncated")
	}
	dict := string(b[10 : 10+n])
	if !strings.Contains(dict, "'descr': '<f4'") || !strings.Contains(dict, "'fortran_order': False") {
		return nil, nil, fmt.Errorf("NPY array is not little-endian float32 in C order: %s", dict)
	}
	i, j := strings.Index(dict, "'shape': ("), strings.Index(dict, ")")
	if i < 0 || j < i {
		return nil, nil, fmt.Errorf("NPY header without a shape: %s", dict)
	}
	var shape []int
	for _, f := range strings.Split(dict[i+len("'shape': ("):j], ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil {
			return nil, nil, fmt.Errorf("NPY shape: %w", err)
		}
		shape = append(shape, d)
	}
	data := b[10+n:]
	if len(data) != 4*(&Tensor{Shape: shape}).Size() {
		return nil, nil, fmt.Errorf("NPY array of shape %v holds %d bytes", shape, len(data))
	}
	return slices.Clip(shape), bytesFloat32(data), nil
}
