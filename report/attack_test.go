package report

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"runtime"
	"testing"
)

// v2File builds a version-2 model file from a header and a claimed parameter count, followed by
// the given parameter bytes (which may be fewer than claimed).
func v2File(t testing.TB, info ModelInfo, claimed uint64, body []byte) []byte {
	h, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(modelMagic)
	_ = binary.Write(&b, binary.LittleEndian, uint32(2))
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(h)))
	b.Write(h)
	_ = binary.Write(&b, binary.LittleEndian, claimed)
	b.Write(body)
	return b.Bytes()
}

// A file claiming a billion parameters but carrying none must fail without allocating them.
func TestDecodeModelTruncatedHugeCountAllocatesLittle(t *testing.T) {
	file := v2File(t, ModelInfo{Arch: "2nn"}, maxModelParams, make([]byte, 16))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := DecodeModelFile(bytes.NewReader(file)); err == nil {
		t.Fatal("truncated model accepted")
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Fatalf("decoding a 16-byte body allocated %d MB", got>>20)
	}
}

// Layouts and input shapes whose products overflow (or are negative) must be rejected, not
// wrapped into a plausible size.
func TestDecodeModelRejectsOverflowingShapes(t *testing.T) {
	four := make([]byte, 16)
	for name, info := range map[string]ModelInfo{
		"tensor overflow": {Arch: "2nn", Tensors: []Tensor{{Name: "w", Shape: []int{1<<62 + 1, 4}}}},
		"tensor negative": {Arch: "2nn", Tensors: []Tensor{{Name: "w", Shape: []int{-1, -4}}}},
		"input overflow":  {Arch: "2nn", Input: [3]int{1 << 62, 4, 1}, Scaling: &FeatureScaling{}},
		"input negative":  {Arch: "2nn", Input: [3]int{-1, -1, 1}, Scaling: &FeatureScaling{Mean: []float32{0}, Scale: []float32{1}}},
	} {
		if _, err := DecodeModelFile(bytes.NewReader(v2File(t, info, 4, four))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func safetensorsFile(header string, data []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestReadSafetensorsRejectsBadShapes(t *testing.T) {
	for name, h := range map[string]string{
		"negative": `{"w":{"dtype":"F32","shape":[-1],"data_offsets":[8,4]}}`,
		"overflow": `{"w":{"dtype":"F32","shape":[4611686018427387905,4],"data_offsets":[0,16]}}`,
		"neg pair": `{"w":{"dtype":"F32","shape":[-1,-4],"data_offsets":[0,16]}}`,
		"reversed": `{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}, "v":{"dtype":"F32","shape":[1],"data_offsets":[20,24]}}`,
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic %v", name, r)
				}
			}()
			if _, _, _, err := ReadSafetensors(bytes.NewReader(safetensorsFile(h, make([]byte, 16)))); err == nil && name != "reversed" {
				t.Errorf("%s: accepted", name)
			}
		}()
	}
}

func TestParseNPYRejectsBadShapes(t *testing.T) {
	for name, shape := range map[string]string{"negative": "-1, -1", "overflow": "4611686018427387905, 4"} {
		dict := "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }"
		b := append([]byte("\x93NUMPY\x01\x00"), byte(len(dict)), 0)
		b = append(append(b, dict...), make([]byte, 16)...)
		if _, _, err := parseNPY(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzReadSafetensors(f *testing.F) {
	f.Add([]byte(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[8,4]}}`), make([]byte, 16))
	f.Add([]byte(`{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`), make([]byte, 16))
	f.Fuzz(func(t *testing.T, header, data []byte) {
		_, _, _, _ = ReadSafetensors(bytes.NewReader(safetensorsFile(string(header), data)))
	})
}
