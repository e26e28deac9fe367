//go:build !amd64

package nn

import "unsafe"

func hasAVX2FMA() bool { return false }

func hasAVX512() bool { return false }

func gemmAsm(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	gemmGo(m, n, k, a, ars, acs, b, ldb, c, ldc, acc)
}

func gemmNTAsm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// The elementwise kernels are only called when useAsm is set, which it never is here; these
// portable versions keep the dispatch code architecture-independent.

func axpyAVX(n int, alpha float32, x, y *float32) {
	xs, ys := unsafe.Slice(x, n), unsafe.Slice(y, n)
	for i, v := range xs {
		ys[i] += alpha * v
	}
}

func momentumAVX(n int, lr, mom float32, w, g, v *float32) {
	ws, gs, vs := unsafe.Slice(w, n), unsafe.Slice(g, n), unsafe.Slice(v, n)
	for i, gi := range gs {
		vs[i] = mom*vs[i] + gi
		ws[i] -= lr * vs[i]
	}
}

func scaleAddAVX(n int, a, b float32, w, c *float32) {
	ws, cs := unsafe.Slice(w, n), unsafe.Slice(c, n)
	for i, ci := range cs {
		ws[i] = a*ws[i] + b*ci
	}
}

func reluAVX(n int, x, y *float32) {
	xs, ys := unsafe.Slice(x, n), unsafe.Slice(y, n)
	for i, v := range xs {
		ys[i] = max(v, 0)
	}
}

func reluBackAVX(n int, out, dOut, dIn *float32) {
	os, gs, ds := unsafe.Slice(out, n), unsafe.Slice(dOut, n), unsafe.Slice(dIn, n)
	for i, v := range os {
		if v > 0 {
			ds[i] = gs[i]
		} else {
			ds[i] = 0
		}
	}
}

func maxPoolRowAVX(ow, c int, x *float32, rowStride int, out *float32, arg *int32, base int) {
	xs := unsafe.Slice(x, rowStride+2*ow*c)
	os, as := unsafe.Slice(out, ow*c), unsafe.Slice(arg, ow*c)
	for ox := 0; ox < ow; ox++ {
		for ch := 0; ch < c; ch++ {
			i := 2*ox*c + ch
			best, bi := xs[i], i
			for _, j := range [3]int{i + c, i + rowStride, i + rowStride + c} {
				if xs[j] > best {
					best, bi = xs[j], j
				}
			}
			os[ox*c+ch], as[ox*c+ch] = best, int32(base+bi)
		}
	}
}

func anyNonFiniteAVX(n int, x *float32) bool {
	for _, v := range unsafe.Slice(x, n) {
		if v-v != 0 {
			return true
		}
	}
	return false
}
