package report

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// modelMagic starts a saved model file: "SHOALMDL", then a little-endian uint32 format version,
// a uint16-length-prefixed architecture name, the uint64 parameter count, and the parameters
// as little-endian float32.
const modelMagic = "SHOALMDL"

const modelVersion = 1

// maxModelParams bounds what ReadModel accepts (4 GiB of float32), so a corrupt header cannot
// make it allocate without limit.
const maxModelParams = 1 << 30

// WriteModel saves params of the named architecture to dir/name.
func WriteModel(dir, name, arch string, params []float32) error {
	var buf bytes.Buffer
	buf.Grow(len(modelMagic) + 16 + len(arch) + 4*len(params))
	buf.WriteString(modelMagic)
	_ = binary.Write(&buf, binary.LittleEndian, uint32(modelVersion))
	_ = binary.Write(&buf, binary.LittleEndian, uint16(len(arch)))
	buf.WriteString(arch)
	_ = binary.Write(&buf, binary.LittleEndian, uint64(len(params)))
	b := make([]byte, 4*len(params))
	for i, p := range params {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(p))
	}
	buf.Write(b)
	return writeFile(filepath.Join(dir, name), buf.Bytes())
}

// ReadModel reads a file written by WriteModel.
func ReadModel(path string) (arch string, params []float32, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("open model: %w", err)
	}
	defer f.Close()
	return DecodeModel(f)
}

// DecodeModel reads the model format from r, rejecting anything malformed.
func DecodeModel(r io.Reader) (arch string, params []float32, err error) {
	magic := make([]byte, len(modelMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != modelMagic {
		return "", nil, errors.New("not a Shoal model file (bad magic)")
	}
	var version uint32
	var nameLen uint16
	if err := binary.Read(r, binary.LittleEndian, &version); err != nil {
		return "", nil, fmt.Errorf("model header: %w", err)
	}
	if version != modelVersion {
		return "", nil, fmt.Errorf("model format version %d, this build reads %d", version, modelVersion)
	}
	if err := binary.Read(r, binary.LittleEndian, &nameLen); err != nil {
		return "", nil, fmt.Errorf("model header: %w", err)
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(r, name); err != nil {
		return "", nil, fmt.Errorf("model header: %w", err)
	}
	var n uint64
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return "", nil, fmt.Errorf("model header: %w", err)
	}
	if n > maxModelParams {
		return "", nil, fmt.Errorf("model claims %d parameters, more than the %d accepted", n, maxModelParams)
	}
	b := make([]byte, 4*n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", nil, fmt.Errorf("model parameters truncated: %w", err)
	}
	params = make([]float32, n)
	for i := range params {
		params[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return string(name), params, nil
}
