package nn

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// kernels runs f with the portable kernels and with each assembly kernel set the CPU has.
func kernels(t *testing.T, f func(t *testing.T)) {
	savedAsm, saved512 := useAsm, useAVX512
	defer func() { useAsm, useAVX512 = savedAsm, saved512 }()
	useAsm, useAVX512 = false, false
	t.Run("go", f)
	if hasAVX2FMA() {
		useAsm = true
		t.Run("avx2", f)
	}
	if hasAVX512() {
		useAVX512 = true
		t.Run("avx512", f)
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// shapes cover the remainders of every blocking (rows mod 4, columns mod 16 and 8, k mod 16 and 8)
// and the shapes the models use.
var gemmShapes = [][3]int{
	{1, 1, 1}, {3, 5, 7}, {4, 16, 1}, {5, 17, 9}, {7, 8, 16}, {9, 24, 31}, {13, 33, 17},
	{10, 200, 784}, {10, 10, 200}, {16, 64, 25}, {2, 7, 3}, {6, 47, 40}, {17, 65, 300}, {11, 31, 5},
}

func TestGemm(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, s := range gemmShapes {
			m, n, k := s[0], s[1], s[2]
			for _, trans := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					// Padded leading dimensions catch kernels that assume contiguous rows.
					lda, ldb, ldc := k+3, n+5, n+2
					ars, acs := lda, 1
					a := randSlice(rng, m*lda)
					if trans { // A is stored k×m (row stride lda=m+3) and read transposed
						lda = m + 3
						ars, acs = 1, lda
						a = randSlice(rng, k*lda)
					}
					b := randSlice(rng, k*ldb)
					c := randSlice(rng, m*ldc)
					want := make([]float64, len(c))
					for i := range c {
						want[i] = float64(c[i])
					}
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var s float64
							for p := 0; p < k; p++ {
								s += float64(a[i*ars+p*acs]) * float64(b[p*ldb+j])
							}
							if acc {
								want[i*ldc+j] += s
							} else {
								want[i*ldc+j] = s
							}
						}
					}
					gemm(m, n, k, a, ars, acs, b, ldb, c, ldc, acc)
					checkClose(t, "gemm", s, trans, acc, c, want, k)
				}
			}
		}
	})
}

func TestGemmNT(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, s := range gemmShapes {
			m, n, k := s[0], s[1], s[2]
			for _, acc := range []bool{false, true} {
				lda, ldb, ldc := k+1, k+3, n+2
				a, b, c := randSlice(rng, m*lda), randSlice(rng, n*ldb), randSlice(rng, m*ldc)
				want := make([]float64, len(c))
				for i := range c {
					want[i] = float64(c[i])
				}
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						var s float64
						for p := 0; p < k; p++ {
							s += float64(a[i*lda+p]) * float64(b[j*ldb+p])
						}
						if acc {
							want[i*ldc+j] += s
						} else {
							want[i*ldc+j] = s
						}
					}
				}
				c2 := append([]float32(nil), c...)
				gemmNT(m, n, k, a, lda, b, ldb, c, ldc, acc)
				checkClose(t, "gemmNT", s, false, acc, c, want, k)
				gemmNTWide(m, n, k, a, lda, b, ldb, c2, ldc, acc, make([]float32, ntScratch(m, n, k)))
				checkClose(t, "gemmNTWide", s, false, acc, c2, want, k)
			}
		}
	})
}

// checkClose allows float32 rounding growing with the length k of the dot products; the padding
// between rows (not written by the kernel) must come back untouched.
func checkClose(t *testing.T, what string, s [3]int, trans, acc bool, got []float32, want []float64, k int) {
	t.Helper()
	tol := 1e-5 * math.Sqrt(float64(k)+1) * 4
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s %v trans=%v acc=%v: element %d is %v, want %v", what, s, trans, acc, i, got[i], want[i])
		}
	}
}

func TestVectorOps(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 77, 200} {
			x, y, w, v := randSlice(rng, n), randSlice(rng, n), randSlice(rng, n), randSlice(rng, n)
			wantY, wantW, wantV := make([]float64, n), make([]float64, n), make([]float64, n)
			for i := range n {
				wantY[i] = float64(y[i]) + 0.3*float64(x[i])
				wantV[i] = 0.9*float64(v[i]) + float64(x[i])
				wantW[i] = float64(w[i]) - 0.1*wantV[i]
			}
			axpy(0.3, x, y)
			momentumStep(0.1, 0.9, w, x, v)
			for i := range n {
				if math.Abs(float64(y[i])-wantY[i]) > 1e-6 || math.Abs(float64(v[i])-wantV[i]) > 1e-6 || math.Abs(float64(w[i])-wantW[i]) > 1e-6 {
					t.Fatalf("n=%d element %d: axpy %v/%v, momentum v %v/%v w %v/%v", n, i, y[i], wantY[i], v[i], wantV[i], w[i], wantW[i])
				}
			}
			for i := range n {
				wantW[i] = 0.5*float64(w[i]) - 2*float64(x[i])
			}
			out, dIn := slices.Clone(x), slices.Clone(y)
			reluForward(out)
			reluBackward(out, dIn)
			for i := range n {
				if out[i] != max(x[i], 0) || (x[i] > 0 && dIn[i] != y[i]) || (x[i] <= 0 && dIn[i] != 0) {
					t.Fatalf("n=%d element %d: relu(%v) = %v, gradient %v from %v", n, i, x[i], out[i], dIn[i], y[i])
				}
			}
			scaleAdd(0.5, -2, w, x)
			for i := range n {
				if math.Abs(float64(w[i])-wantW[i]) > 1e-5 {
					t.Fatalf("n=%d element %d: scaleAdd %v, want %v", n, i, w[i], wantW[i])
				}
			}
		}
	})
}

func TestMaxPool(t *testing.T) {
	in := Shape{16, 5, 7} // odd height and width: the last row and column are dropped
	rng := rand.New(rand.NewPCG(7, 7))
	x := make([]float32, 3*in.Size())
	for i := range x {
		x[i] = float32(rng.IntN(4)) // many ties: the first maximum must win on every path
	}
	x[5] = float32(math.NaN())
	ref := &maxPool2{in: in}
	ref.reserve(3)
	wantOut := make([]float32, 3*ref.outShape().Size())
	saved := useAsm
	useAsm = false
	ref.forward(x, wantOut, 3)
	useAsm = saved
	kernels(t, func(t *testing.T) {
		p := &maxPool2{in: in}
		p.reserve(3)
		out := make([]float32, len(wantOut))
		p.forward(x, out, 3)
		for i := range out {
			if out[i] != wantOut[i] && !(out[i] != out[i] && wantOut[i] != wantOut[i]) || p.arg[i] != ref.arg[i] {
				t.Fatalf("output %d: %v (from %d), want %v (from %d)", i, out[i], p.arg[i], wantOut[i], ref.arg[i])
			}
		}
	})
	// The Go reference itself: output 0 of channel 0 takes the first of the tied maxima.
	o := ref.outShape()
	for ch := 0; ch < in.C; ch++ {
		cands := []int{ch, in.C + ch, in.W*in.C + ch, in.W*in.C + in.C + ch}
		best := cands[0]
		for _, c := range cands[1:] {
			if x[c] > x[best] {
				best = c
			}
		}
		if int(ref.arg[ch]) != best || o.H != 2 || o.W != 3 {
			t.Fatalf("channel %d: arg %d, want %d", ch, ref.arg[ch], best)
		}
	}
}

func TestFirstNonFinite(t *testing.T) {
	kernels(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 8, 9, 40, 77} {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(i) - 3e38
			}
			if got := firstNonFinite(v); got != -1 {
				t.Fatalf("n=%d finite: got %d", n, got)
			}
			for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
				for _, at := range []int{0, n / 2, n - 1} {
					if n == 0 {
						continue
					}
					v[at] = bad
					if got := firstNonFinite(v); got != at {
						t.Fatalf("n=%d %v at %d: got %d", n, bad, at, got)
					}
					v[at] = 1
				}
			}
		}
	})
}
