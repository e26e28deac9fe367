package privacy

import (
	"testing"
)

func TestCentralNoisyMean(t *testing.T) {
	const d, clients, clip, z = 200_000, 50.0, 0.7, 1.3
	sum := make([]float64, d)
	for i := range sum {
		sum[i] = float64(i%7) * 0.1 // the mean should come out as sum/50
	}
	dst := make([]float32, d)
	sigma, err := CentralNoisyMean(dst, sum, clip, z, clients, NewSeededSource(11))
	if err != nil {
		t.Fatal(err)
	}
	want := z * clip / clients
	if sigma < want || sigma > want*1.001 {
		t.Errorf("σ on the mean = %v, want just above %v", sigma, want)
	}
	m := newMoments(sigma, 2*sigma, 3*sigma)
	for i := range dst {
		m.add(float64(dst[i]) - sum[i]/clients)
	}
	m.check(t, "central noise on the mean", sigma)
	if _, err := CentralNoisyMean(dst, sum, clip, z, 0, NewSeededSource(1)); err == nil {
		t.Error("zero expected clients accepted")
	}
	if _, err := CentralNoisyMean(dst[:10], sum, clip, z, clients, NewSeededSource(1)); err == nil {
		t.Error("dimension mismatch accepted")
	}
}

func TestLocalNoise(t *testing.T) {
	const d, clip, z = 100_000, 0.5, 0.8
	u := randomVector(d, 1, 5)
	clipped := append([]float32(nil), u...)
	if _, err := ClipL2(clipped, clip); err != nil {
		t.Fatal(err)
	}
	norm, sigma, err := LocalNoise(u, clip, z, NewSeededSource(5))
	if err != nil {
		t.Fatal(err)
	}
	if norm < 100 {
		t.Errorf("pre-clip norm %v, want ≈ √%d", norm, d)
	}
	if want := 2 * z * clip; sigma < want || sigma > want*1.001 {
		t.Errorf("local σ = %v, want just above %v", sigma, want)
	}
	m := newMoments(sigma, 2*sigma)
	for i := range u {
		m.add(float64(u[i]) - float64(clipped[i]))
	}
	m.check(t, "local noise", sigma)
	if _, _, err := LocalNoise(u, clip, 0, NewSeededSource(5)); err == nil {
		t.Error("zero noise multiplier accepted")
	}
	if _, err := ParsePlacement("global"); err == nil {
		t.Error("unknown placement accepted")
	}
}
