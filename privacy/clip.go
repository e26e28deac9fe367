package privacy

import (
	"errors"
	"fmt"
	"math"
)

// clipShrink keeps a clipped float32 vector strictly inside the ball: rounding each scaled
// coordinate to float32 can grow the norm by a relative 2⁻²⁴, so clipping aims 2⁻²⁰ below S.
const clipShrink = 1 - 0x1p-20

// ErrNonFinite reports a NaN or infinite value where a finite one is required.
var ErrNonFinite = errors.New("privacy: non-finite value")

func checkPositiveFinite(name string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s = %v: %w", name, v, ErrNonFinite)
	}
	if v <= 0 {
		return fmt.Errorf("privacy: %s must be > 0, got %v", name, v)
	}
	return nil
}

// L2Norm returns the Euclidean norm of v, accumulated in float64.
func L2Norm(v []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		a, b, c, d := float64(v[i]), float64(v[i+1]), float64(v[i+2]), float64(v[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(v); i++ {
		a := float64(v[i])
		s0 += a * a
	}
	return math.Sqrt(s0 + s1 + s2 + s3)
}

func scale32(v []float32, f float64) {
	f32 := float32(f)
	for i := range v {
		v[i] *= f32
	}
}

// ClipL2 scales update in place so that its L2 norm is at most clip and returns the norm it had
// before clipping (the adaptive clipper needs it). An update containing NaN or ±Inf is rejected
// untouched, since no scaling could bound its norm.
func ClipL2(update []float32, clip float64) (norm float64, err error) {
	if err := checkPositiveFinite("clip", clip); err != nil {
		return 0, err
	}
	norm = L2Norm(update)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, fmt.Errorf("privacy: clip update: %w in update", ErrNonFinite)
	}
	if norm > clip {
		scale32(update, clip/norm*clipShrink)
	}
	return norm, nil
}

// PerLayerClipBound returns the overall L2 bound sqrt(Σ S_j²) that per-layer clipping to clips
// guarantees; it is the sensitivity to calibrate noise against.
func PerLayerClipBound(clips []float64) float64 {
	var s float64
	for _, c := range clips {
		s += c * c
	}
	return math.Sqrt(s)
}

// SplitClipBySize divides an overall bound S among layers so that S_j² ∝ layer size
// (sqrt(Σ S_j²) = S): every parameter gets the same share of the budget, as flat clipping would
// give a vector with evenly spread energy.
func SplitClipBySize(total float64, layerSizes []int) ([]float64, error) {
	if err := checkPositiveFinite("clip", total); err != nil {
		return nil, err
	}
	n := 0
	for j, sz := range layerSizes {
		if sz <= 0 {
			return nil, fmt.Errorf("privacy: layer %d has size %d, want > 0", j, sz)
		}
		n += sz
	}
	if n == 0 {
		return nil, errors.New("privacy: split clip: no layers")
	}
	clips := make([]float64, len(layerSizes))
	for j, sz := range layerSizes {
		clips[j] = total * math.Sqrt(float64(sz)/float64(n))
	}
	return clips, nil
}

// ClipPerLayer clips each layer of a flat update (consecutive slices of the given sizes, which
// must cover the update exactly) to its own bound clips[j], in place, and returns the pre-clip
// norm of each layer. The whole update then has norm at most PerLayerClipBound(clips).
func ClipPerLayer(update []float32, layerSizes []int, clips []float64) ([]float64, error) {
	if len(layerSizes) != len(clips) {
		return nil, fmt.Errorf("privacy: clip per layer: %d layer sizes but %d clips", len(layerSizes), len(clips))
	}
	total := 0
	for j, sz := range layerSizes {
		if sz < 0 {
			return nil, fmt.Errorf("privacy: clip per layer: layer %d has negative size %d", j, sz)
		}
		if err := checkPositiveFinite(fmt.Sprintf("clip of layer %d", j), clips[j]); err != nil {
			return nil, err
		}
		total += sz
	}
	if total != len(update) {
		return nil, fmt.Errorf("privacy: clip per layer: layer sizes sum to %d, update has %d parameters", total, len(update))
	}
	norms := make([]float64, len(layerSizes))
	off := 0
	for j, sz := range layerSizes {
		norms[j] = L2Norm(update[off : off+sz])
		if math.IsNaN(norms[j]) || math.IsInf(norms[j], 0) {
			return norms, fmt.Errorf("privacy: clip per layer: %w in layer %d", ErrNonFinite, j)
		}
		off += sz
	}
	off = 0
	for j, sz := range layerSizes {
		if norms[j] > clips[j] {
			scale32(update[off:off+sz], clips[j]/norms[j]*clipShrink)
		}
		off += sz
	}
	return norms, nil
}
