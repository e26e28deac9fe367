package main

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"shoal/data"
	"shoal/nn"
	"shoal/report"
)

// onnxPredict runs the ONNX file through onnx.checker and a NumPy evaluation of its graph
// (report/testdata/onnx_eval.py) with Debian's python3-onnx, which .ci/run installs.
func onnxPredict(t *testing.T, model []byte, x []float32) []int {
	t.Helper()
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import onnx, numpy").Run() != nil {
		t.Fatal("Debian's python3-onnx and python3-numpy are needed to check the ONNX export: apt-get install -y python3-onnx python3-numpy (.ci/run does)")
	}
	dir := t.TempDir()
	mp, xp := filepath.Join(dir, "m.onnx"), filepath.Join(dir, "x.bin")
	var xb bytes.Buffer
	for _, v := range x {
		b := make([]byte, 4)
		putFloat(b, v)
		xb.Write(b)
	}
	if err := os.WriteFile(mp, model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(xp, xb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "../../report/testdata/onnx_eval.py", mp, xp).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx check/eval: %v\n%s", err, out)
	}
	var preds []int
	for _, f := range strings.Fields(string(out)) {
		var v int
		fmt.Sscan(f, &v)
		preds = append(preds, v)
	}
	return preds
}

// The ONNX export of each built-in architecture passes onnx.checker and predicts what Shoal
// predicts, with the stored scaling inside the graph.
func TestONNXExportMatchesShoal(t *testing.T) {
	for _, tc := range []struct {
		arch  string
		shape nn.Shape
	}{{"logreg", nn.Shape{C: 1, H: 1, W: 6}}, {"2nn", nn.Shape{C: 1, H: 1, W: 6}}, {"cnn", nn.Shape{C: 2, H: 9, W: 8}}} {
		t.Run(tc.arch, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			m, err := nn.New(tc.arch, tc.shape, 4, rng)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range m.Params() { // non-zero biases too
				m.Params()[i] = p + float32(rng.NormFloat64())*0.05
			}
			d := tc.shape.Size()
			sc := &data.Scaling{Mean: make([]float32, d), Scale: make([]float32, d)}
			for j := range d {
				sc.Mean[j], sc.Scale[j] = float32(j), 1/float32(j+1)
			}
			n := 40
			raw := make([]float32, n*d)
			for i := range raw {
				raw[i] = float32(rng.NormFloat64()*3) + float32(i%d)
			}
			scaled := slices.Clone(raw)
			ds := &data.Dataset{Name: "x", X: scaled, Y: make([]int32, n), Dim: d, C: tc.shape.C, H: tc.shape.H, W: tc.shape.W, Classes: 4}
			if err := sc.Apply(ds); err != nil {
				t.Fatal(err)
			}
			logits, err := m.Logits(scaled)
			if err != nil {
				t.Fatal(err)
			}
			model := &report.Model{Info: describeModel(m, []string{"a", "b", "c", "d"}, sc, "test"), Params: m.Params()}
			var buf bytes.Buffer
			if err := report.WriteONNX(&buf, model); err != nil {
				t.Fatal(err)
			}
			if got, want := onnxPredict(t, buf.Bytes(), raw), argmaxes(logits, 4); !slices.Equal(got, want) {
				t.Fatalf("ONNX predicts %v, Shoal %v", got, want)
			}
		})
	}
}

func putFloat(b []byte, v float32) {
	u := math.Float32bits(v)
	b[0], b[1], b[2], b[3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
}

// Every run directory gets a self-describing model.bin and model.safetensors; shoal export
// converts model.bin to each format.
func TestRunDirModelFilesAndExport(t *testing.T) {
	csv := writeTabularCSV(t, 200, 9)
	out := filepath.Join(t.TempDir(), "run")
	if code, _, stderr := shoal(t, "simulate", "--dataset", "csv", "--data", csv, "--label-column", "target", "--model", "2nn",
		"--clients", "4", "--rounds", "2", "--seed", "2", "--out", out); code != 0 {
		t.Fatalf("simulate: %s", stderr)
	}
	m, err := report.ReadModelFile(filepath.Join(out, "model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Info.Arch != "2nn" || m.Info.Input != [3]int{1, 1, 30} || !slices.Equal(m.Info.Classes, []string{"benign", "malignant"}) ||
		m.Info.Scaling == nil || len(m.Info.Tensors) != 6 || m.Info.Rounds != 2 || len(m.Info.Protection) == 0 {
		t.Fatalf("model description %+v", m.Info)
	}
	f, err := os.Open(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tensors, _, _, err := report.ReadSafetensors(f)
	if err != nil || !slices.Equal(tensors["fc3.bias"], m.Params[len(m.Params)-2:]) {
		t.Fatalf("model.safetensors: %v", err)
	}
	for _, format := range exportFormats {
		file := filepath.Join(t.TempDir(), "m."+format)
		if code, _, stderr := shoal(t, "export", "--format", format, "--model", filepath.Join(out, "model.bin"), "--out", file); code != 0 {
			t.Fatalf("export %s: %s", format, stderr)
		}
		if st, err := os.Stat(file); err != nil || st.Size() < int64(4*len(m.Params)) {
			t.Fatalf("export %s: %v", format, err)
		}
	}
	if code, _, stderr := shoal(t, "export", "--format", "tflite", "--model", filepath.Join(out, "model.bin"), "--out", "x"); code == 0 || !strings.Contains(stderr, "valid: safetensors") {
		t.Fatalf("unknown format: exit %d, %s", code, stderr)
	}
}
