package report

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func testModel() *Model {
	eps, delta := 1.5, 1e-5
	return &Model{Info: ModelInfo{Arch: "logreg", Input: [3]int{1, 1, 3}, Classes: []string{"benign", "malignant"},
		Tensors:    []Tensor{{Name: "fc1.weight", Shape: []int{3, 2}}, {Name: "fc1.bias", Shape: []int{2}, Offset: 6}},
		Scaling:    &FeatureScaling{Mean: []float32{1, 2, 3}, Scale: []float32{0.5, 1, 2}},
		Protection: []string{"DP-FedAvg, central noise"}, Epsilon: &eps, Delta: &delta, Dataset: "csv"},
		Params: []float32{1, -2, 3.5, 0.25, -1e-3, 7, 0.5, -0.5}}
}

// Version 2 carries the whole description; version 1 files still read.
func TestModelFileV2RoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := testModel()
	if err := WriteModelFile(dir, "m.bin", m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadModelFile(filepath.Join(dir, "m.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("read back %+v, want %+v", got.Info, m.Info)
	}
	v1 := append([]byte("SHOALMDL\x01\x00\x00\x00\x06\x00logreg\x01\x00\x00\x00\x00\x00\x00\x00"), 0, 0, 0x80, 0x3f)
	old, err := DecodeModelFile(bytes.NewReader(v1))
	if err != nil || old.Info.Arch != "logreg" || !slices.Equal(old.Params, []float32{1}) {
		t.Fatalf("version 1: %+v, %v", old, err)
	}
	bad := *m
	bad.Info.Tensors = []Tensor{{Name: "fc1.weight", Shape: []int{3, 2}}}
	if err := WriteModelFile(dir, "bad.bin", &bad); err == nil {
		t.Fatal("a layout that does not cover the parameters was written")
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	m := testModel()
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, m); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if n := int(b[0]); (8+n)%8 != 0 {
		t.Fatalf("data not 8-byte aligned: header %d bytes", n)
	}
	tensors, shapes, meta, err := ReadSafetensors(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tensors["fc1.weight"], m.Params[:6]) || !slices.Equal(tensors["fc1.bias"], m.Params[6:]) ||
		!slices.Equal(shapes["fc1.weight"], []int{3, 2}) {
		t.Fatalf("tensors %v shapes %v", tensors, shapes)
	}
	if meta["arch"] != "logreg" || !strings.Contains(meta["classes"], "malignant") || meta["epsilon"] != "1.5" {
		t.Fatalf("metadata %v", meta)
	}
}

func TestNPZRoundTrip(t *testing.T) {
	m := testModel()
	var buf bytes.Buffer
	if err := WriteNPZ(&buf, m); err != nil {
		t.Fatal(err)
	}
	arrays, shapes, err := ReadNPZ(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(arrays["fc1.weight"], m.Params[:6]) || !slices.Equal(shapes["fc1.bias"], []int{2}) ||
		!slices.Equal(arrays["feature_scaling.scale"], []float32{0.5, 1, 2}) {
		t.Fatalf("arrays %v shapes %v", arrays, shapes)
	}
	// NumPy itself reads the archive the same way (Debian's python3-numpy, which .ci/run installs).
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import numpy").Run() != nil {
		t.Fatal("Debian's python3-numpy is needed to check the .npz export: apt-get install -y python3-numpy (.ci/run does)")
	}
	path := filepath.Join(t.TempDir(), "m.npz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", `import numpy, sys
z = numpy.load(sys.argv[1])
w = z["fc1.weight"]
print(w.dtype, w.shape, float(w[1, 0]), float(z["fc1.bias"][1]))`, path).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "float32 (3, 2) 3.5 -0.5" {
		t.Fatalf("numpy: %s %v", out, err)
	}
}
