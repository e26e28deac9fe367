package nn

// Vector operations of the optimizer, on the AVX2 kernels when available; the scalar loops do
// the tail (and everything on other CPUs).

// axpy computes y += alpha·x.
func axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	done := 0
	if n8 := len(x) &^ 7; useAsm && n8 > 0 {
		axpyAVX(n8, alpha, &x[0], &y[0])
		done = n8
	}
	for i := done; i < len(x); i++ {
		y[i] += alpha * x[i]
	}
}

// momentumStep computes v = mom·v + g; w −= lr·v.
func momentumStep(lr, mom float32, w, g, v []float32) {
	g, v = g[:len(w)], v[:len(w)]
	done := 0
	if n8 := len(w) &^ 7; useAsm && n8 > 0 {
		momentumAVX(n8, lr, mom, &w[0], &g[0], &v[0])
		done = n8
	}
	for i := done; i < len(w); i++ {
		v[i] = mom*v[i] + g[i]
		w[i] -= lr * v[i]
	}
}

// scaleAdd computes w = a·w + b·c.
func scaleAdd(a, b float32, w, c []float32) {
	c = c[:len(w)]
	done := 0
	if n8 := len(w) &^ 7; useAsm && n8 > 0 {
		scaleAddAVX(n8, a, b, &w[0], &c[0])
		done = n8
	}
	for i := done; i < len(w); i++ {
		w[i] = a*w[i] + b*c[i]
	}
}
