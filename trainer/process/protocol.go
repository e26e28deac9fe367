package process

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"unsafe"
)

// Version is the trainer protocol version this Shoal speaks (docs/trainer.md).
const Version = 1

// Frame layout (all integers little-endian):
//
//	magic   4 bytes  "SHTR"
//	hlen    uint32   length of the JSON header, at most MaxHeader
//	plen    uint64   length of the payload
//	header  hlen bytes of JSON, an object with a "type"
//	payload plen bytes: header.params float32 values, then header.indices int32 values
const (
	magic = "SHTR"
	// MaxHeader bounds a frame's JSON header (a layout of many tensors fits easily).
	MaxHeader = 4 << 20
	// chunk is the size of the blocks payloads are streamed in.
	chunk = 4 << 20
)

// Tensor is one named parameter tensor of the trainer's model. The parameter vector is the
// concatenation of the tensors, each flattened in row-major (C) order, in the order of the
// layout.
type Tensor struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	DType string `json:"dtype"`
}

// Size is the number of values in the tensor.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Layout is the trainer's parameter layout, from its handshake.
type Layout []Tensor

// Size is the length of the flat parameter vector.
func (l Layout) Size() int {
	n := 0
	for _, t := range l {
		n += t.Size()
	}
	return n
}

// Sizes is each tensor's size, the "layers" of per-layer clipping.
func (l Layout) Sizes() []int {
	s := make([]int, len(l))
	for i, t := range l {
		s[i] = t.Size()
	}
	return s
}

// maxParams bounds a layout (2³¹−1 float32 values, 8 GiB).
const maxParams = math.MaxInt32

// validate checks a layout from a handshake.
func (l Layout) validate() error {
	if len(l) == 0 {
		return errors.New("layout has no tensors")
	}
	seen := make(map[string]bool, len(l))
	total := 0
	for i, t := range l {
		switch {
		case t.Name == "":
			return fmt.Errorf("layout tensor %d has no name", i)
		case seen[t.Name]:
			return fmt.Errorf("layout names tensor %q twice", t.Name)
		case t.DType != "float32":
			return fmt.Errorf("layout tensor %q has dtype %q; the protocol carries float32 only", t.Name, t.DType)
		}
		seen[t.Name] = true
		n := 1
		for _, d := range t.Shape {
			if d < 1 || d > maxParams {
				return fmt.Errorf("layout tensor %q has shape %v: every dimension must be ≥ 1", t.Name, t.Shape)
			}
			if n *= d; n > maxParams {
				return fmt.Errorf("layout tensor %q is too large (%v)", t.Name, t.Shape)
			}
		}
		if total += n; total > maxParams {
			return fmt.Errorf("layout has more than %d parameters", maxParams)
		}
	}
	return nil
}

// header is the JSON header of every frame; each message type uses some of the fields.
type header struct {
	Type     string             `json:"type"`
	Protocol int                `json:"protocol,omitempty"`
	Trainer  string             `json:"trainer,omitempty"`
	Layout   Layout             `json:"layout,omitempty"`
	Params   int                `json:"params,omitempty"`
	Indices  int                `json:"indices,omitempty"`
	Kind     string             `json:"kind,omitempty"`
	Examples int                `json:"examples,omitempty"`
	Loss     float64            `json:"loss,omitempty"`
	Accuracy float64            `json:"accuracy,omitempty"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	Message  string             `json:"message,omitempty"`
}

// frame is one message: its header (as sent: a map or a struct) and its payload.
type frame struct {
	hdr     any
	params  []float32
	indices []int
}

// littleEndian reports whether float32 slices can be sent as their memory (amd64, arm64).
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// writeFrame writes f to w: the fixed prefix and header buffered, the payload streamed.
func writeFrame(w *bufio.Writer, f frame) error {
	h, err := json.Marshal(f.hdr)
	if err != nil {
		return fmt.Errorf("encode header: %w", err)
	}
	if len(h) > MaxHeader {
		return fmt.Errorf("header of %d bytes exceeds %d", len(h), MaxHeader)
	}
	var prefix [16]byte
	copy(prefix[:4], magic)
	binary.LittleEndian.PutUint32(prefix[4:8], uint32(len(h)))
	binary.LittleEndian.PutUint64(prefix[8:16], uint64(4*len(f.params)+4*len(f.indices)))
	if _, err := w.Write(prefix[:]); err != nil {
		return err
	}
	if _, err := w.Write(h); err != nil {
		return err
	}
	if err := writeFloats(w, f.params); err != nil {
		return err
	}
	if len(f.indices) > 0 {
		buf := make([]byte, 4*len(f.indices))
		for i, v := range f.indices {
			binary.LittleEndian.PutUint32(buf[4*i:], uint32(int32(v)))
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return w.Flush()
}

// writeFloats streams v as little-endian float32: straight from memory on little-endian hosts
// (bufio passes writes larger than its buffer through without copying).
func writeFloats(w *bufio.Writer, v []float32) error {
	if len(v) == 0 {
		return nil
	}
	if littleEndian {
		_, err := w.Write(unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v)))
		return err
	}
	var buf [4]byte
	for _, x := range v {
		binary.LittleEndian.PutUint32(buf[:], math.Float32bits(x))
		if _, err := w.Write(buf[:]); err != nil {
			return err
		}
	}
	return nil
}

// errProtocol marks a frame that breaks the protocol: the channel cannot be trusted after it.
var errProtocol = errors.New("protocol violation")

// readHeader reads a frame's prefix and header; the payload (plen bytes) is left to the caller.
func readHeader(r *bufio.Reader) (header, uint64, error) {
	var prefix [16]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return header{}, 0, err
	}
	if string(prefix[:4]) != magic {
		return header{}, 0, fmt.Errorf("%w: the trainer wrote %q to stdout where a frame should start "+
			"(stdout is the protocol channel: print logs to stderr)", errProtocol, prefix[:])
	}
	hlen := binary.LittleEndian.Uint32(prefix[4:8])
	plen := binary.LittleEndian.Uint64(prefix[8:16])
	if hlen > MaxHeader {
		return header{}, 0, fmt.Errorf("%w: header of %d bytes exceeds %d", errProtocol, hlen, MaxHeader)
	}
	raw := make([]byte, hlen)
	if _, err := io.ReadFull(r, raw); err != nil {
		return header{}, 0, fmt.Errorf("read header: %w", err)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return header{}, 0, fmt.Errorf("%w: header is not a JSON object: %v", errProtocol, err)
	}
	if h.Type == "" {
		return header{}, 0, fmt.Errorf("%w: header has no type", errProtocol)
	}
	if h.Params < 0 || h.Indices < 0 || h.Params > maxParams || h.Indices > maxParams || plen != 4*uint64(h.Params)+4*uint64(h.Indices) {
		return header{}, 0, fmt.Errorf("%w: %s frame announces %d parameters and %d indices but carries %d payload bytes",
			errProtocol, h.Type, h.Params, h.Indices, plen)
	}
	return h, plen, nil
}

// readFloats reads n little-endian float32 values into dst (grown as needed) in chunks.
func readFloats(r io.Reader, dst []float32, n int) ([]float32, error) {
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	if n == 0 {
		return dst, nil
	}
	if littleEndian {
		b := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n)
		for len(b) > 0 {
			k := min(len(b), chunk)
			if _, err := io.ReadFull(r, b[:k]); err != nil {
				return nil, fmt.Errorf("read parameters: %w", err)
			}
			b = b[k:]
		}
		return dst, nil
	}
	var buf [4]byte
	for i := range dst {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return nil, fmt.Errorf("read parameters: %w", err)
		}
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[:]))
	}
	return dst, nil
}

// readIndices reads n little-endian int32 values.
func readIndices(r io.Reader, n int) ([]int, error) {
	buf := make([]byte, 4*n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read indices: %w", err)
	}
	out := make([]int, n)
	for i := range out {
		out[i] = int(int32(binary.LittleEndian.Uint32(buf[4*i:])))
	}
	return out, nil
}
