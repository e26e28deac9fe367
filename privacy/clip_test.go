package privacy

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func randomVector(n int, scale float64, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

func TestClipL2(t *testing.T) {
	v := randomVector(10_001, 1, 1)
	orig := append([]float32(nil), v...)
	before := L2Norm(v)
	norm, err := ClipL2(v, 3)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(norm-before) > 1e-12*before || before < 50 {
		t.Fatalf("ClipL2 returned norm %v, want the pre-clip norm %v", norm, before)
	}
	after := L2Norm(v)
	if after > 3 || after < 3*(1-1e-5) {
		t.Errorf("clipped norm %v, want just under 3", after)
	}
	// Direction kept: v is a positive multiple of orig.
	ratio := float64(v[0]) / float64(orig[0])
	for i := range v {
		if math.Abs(float64(v[i])-ratio*float64(orig[i])) > 1e-6*math.Abs(float64(orig[i]))+1e-9 {
			t.Fatalf("coordinate %d: %v is not %v × %v", i, v[i], ratio, orig[i])
		}
	}
	// Within the bound: untouched.
	w := randomVector(100, 0.01, 2)
	w0 := append([]float32(nil), w...)
	if _, err := ClipL2(w, 3); err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if w[i] != w0[i] {
			t.Fatal("an update within the clip was modified")
		}
	}
}

func TestClipL2BadInput(t *testing.T) {
	v := []float32{1, float32(math.NaN()), 2}
	if _, err := ClipL2(v, 1); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN update: err = %v", err)
	}
	if v[0] != 1 || v[2] != 2 {
		t.Error("rejected update was modified")
	}
	if _, err := ClipL2([]float32{float32(math.Inf(1))}, 1); !errors.Is(err, ErrNonFinite) {
		t.Errorf("Inf update: err = %v", err)
	}
	for _, c := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, err := ClipL2([]float32{1}, c); err == nil {
			t.Errorf("clip %v accepted", c)
		}
	}
}

func TestClipPerLayer(t *testing.T) {
	sizes := []int{300, 20, 1000, 5}
	v := randomVector(1325, 1, 3)
	clips, err := SplitClipBySize(2, sizes)
	if err != nil {
		t.Fatal(err)
	}
	if b := PerLayerClipBound(clips); math.Abs(b-2) > 1e-12 {
		t.Fatalf("split clips bound %v, want 2", b)
	}
	clips[1] = 100 // one layer far under its bound stays untouched
	layer1 := append([]float32(nil), v[300:320]...)
	norms, err := ClipPerLayer(v, sizes, clips)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for j, sz := range sizes {
		n := L2Norm(v[off : off+sz])
		if n > clips[j] {
			t.Errorf("layer %d: norm %v > clip %v", j, n, clips[j])
		}
		if norms[j] > clips[j] && n < clips[j]*(1-1e-5) {
			t.Errorf("layer %d: clipped to %v, want ≈ %v", j, n, clips[j])
		}
		off += sz
	}
	for i := range layer1 {
		if v[300+i] != layer1[i] {
			t.Fatal("layer within its clip was modified")
		}
	}
	if L2Norm(v) > PerLayerClipBound(clips) {
		t.Error("total norm exceeds sqrt(Σ S_j²)")
	}
	if _, err := ClipPerLayer(v, []int{1325}, []float64{1, 2}); err == nil {
		t.Error("mismatched sizes and clips accepted")
	}
	if _, err := ClipPerLayer(v, []int{1000, 300}, []float64{1, 2}); err == nil {
		t.Error("sizes not covering the update accepted")
	}
	if _, err := SplitClipBySize(1, []int{3, 0}); err == nil {
		t.Error("empty layer accepted")
	}
}
