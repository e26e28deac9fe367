package report

import (
	"bytes"
	"encoding/csv"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestModelRoundTrip(t *testing.T) {
	dir := t.TempDir()
	params := []float32{0, -1.5, float32(math.Pi), 1e-30, 3e38}
	if err := WriteModel(dir, "m.bin", "2nn", params); err != nil {
		t.Fatal(err)
	}
	arch, got, err := ReadModel(filepath.Join(dir, "m.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if arch != "2nn" || !slices.Equal(got, params) {
		t.Fatalf("read back %q %v", arch, got)
	}
}

func TestDecodeModelRejectsMalformed(t *testing.T) {
	var good bytes.Buffer
	dir := t.TempDir()
	_ = WriteModel(dir, "m.bin", "cnn", []float32{1, 2, 3})
	b, _ := os.ReadFile(filepath.Join(dir, "m.bin"))
	good.Write(b)
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("NOTSHOAL"), b[8:]...),
		"truncated": b[:len(b)-1],
		"version":   append(append([]byte(modelMagic), 9, 0, 0, 0), b[12:]...),
		"huge":      append(append(slices.Clone(b[:len(b)-12-8]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), b[len(b)-12:]...),
	} {
		if _, _, err := DecodeModel(bytes.NewReader(bad)); err == nil {
			t.Errorf("%s: malformed model accepted", name)
		}
	}
}

func FuzzDecodeModel(f *testing.F) {
	dir := f.TempDir()
	_ = WriteModel(dir, "m.bin", "logreg", []float32{1, 2})
	b, _ := os.ReadFile(filepath.Join(dir, "m.bin"))
	f.Add(b)
	f.Add([]byte(modelMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		arch, params, err := DecodeModel(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		d := t.TempDir()
		if err := WriteModel(d, "x", arch, params); err != nil {
			t.Fatal(err)
		}
		again, _ := os.ReadFile(filepath.Join(d, "x"))
		out.Write(again)
		if !bytes.Equal(out.Bytes(), data[:out.Len()]) {
			t.Fatal("decode/encode does not round-trip")
		}
	})
}

func TestCSVAndPlot(t *testing.T) {
	dir := t.TempDir()
	if err := WriteCSV(dir, "m.csv", []string{"round", "accuracy"}, [][]string{{"1", F(0.5)}, {"2", F(0.75)}}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, "m.csv"))
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 3 || rows[2][1] != "0.75" {
		t.Fatalf("csv: %v %v", rows, err)
	}
	s := Series{Title: "accuracy", YLabel: "acc", Points: []Point{{1, 0.5}, {2, 0.75}}}
	if err := WritePlot(dir, "p.png", "test", []Series{s, s}); err != nil {
		t.Fatal(err)
	}
	pf, _ := os.Open(filepath.Join(dir, "p.png"))
	defer pf.Close()
	img, err := png.Decode(pf)
	if err != nil {
		t.Fatalf("plot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
		t.Fatalf("plot size %v", b)
	}
}
