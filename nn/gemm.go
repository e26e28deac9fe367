package nn

// The matrix products the layers need, all row-major float32:
//
//	gemm:       C(m×n) (+)= A(m×k)·B(k×n), with A read through strides so that A may be a transposed
//	            view (A(i,p) = a[i*ars+p*acs]); this covers both X·W (forward) and Xᵀ·dY (weight
//	            gradients).
//	gemmNT:     C(m×n) (+)= A(m×k)·B(n×k)ᵀ, as dot products of contiguous rows (input gradients dY·Wᵀ).
//	gemmNTWide: the same product computed as (B·Aᵀ)ᵀ with gemm, faster for batch-sized m.
//
// acc=false overwrites C, acc=true adds to it. Slices must be long enough for the shapes: that is
// an internal invariant, checked here so that a bug panics in Go rather than corrupting memory
// in assembly.

// useAsm selects the AVX2/FMA kernels; it is false on CPUs or architectures without them, and
// tests flip it to compare both paths.
var useAsm = hasAVX2FMA()

// useAVX512 additionally selects the AVX-512 GEMM kernels (twice the width; on CPUs with full
// 512-bit FMA units, such as AMD Zen 5 and Intel server cores, up to twice the throughput).
var useAVX512 = useAsm && hasAVX512()

// emptyProduct is C = A·B with k = 0: C becomes zero, or stays as it is when accumulating.
func emptyProduct(m, n int, c []float32, ldc int, acc bool) {
	if acc {
		return
	}
	for i := 0; i < m; i++ {
		clear(c[i*ldc : i*ldc+n])
	}
}

func gemm(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		emptyProduct(m, n, c, ldc, acc)
		return
	}
	if (m-1)*ars+(k-1)*acs >= len(a) || (k-1)*ldb+n > len(b) || (m-1)*ldc+n > len(c) {
		panic("nn: gemm operand too short")
	}
	if useAsm {
		gemmAsm(m, n, k, a, ars, acs, b, ldb, c, ldc, acc)
		return
	}
	gemmGo(m, n, k, a, ars, acs, b, ldb, c, ldc, acc)
}

func gemmNT(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		emptyProduct(m, n, c, ldc, acc)
		return
	}
	if (m-1)*lda+k > len(a) || (n-1)*ldb+k > len(b) || (m-1)*ldc+n > len(c) {
		panic("nn: gemmNT operand too short")
	}
	if useAsm {
		gemmNTAsm(m, n, k, a, lda, b, ldb, c, ldc, acc)
		return
	}
	gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc, acc)
}

// gemmGo is the portable kernel: four rows of C at a time so that each loaded row of B feeds four
// multiply-adds, with the inner loop running along contiguous rows of B and C.
func gemmGo(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if !acc {
		for i := 0; i < m; i++ {
			clear(c[i*ldc : i*ldc+n])
		}
	}
	i := 0
	for ; i+4 <= m; i += 4 {
		c0 := c[i*ldc : i*ldc+n]
		c1 := c[(i+1)*ldc : (i+1)*ldc+n]
		c2 := c[(i+2)*ldc : (i+2)*ldc+n]
		c3 := c[(i+3)*ldc : (i+3)*ldc+n]
		for p := 0; p < k; p++ {
			ap := i*ars + p*acs
			a0, a1, a2, a3 := a[ap], a[ap+ars], a[ap+2*ars], a[ap+3*ars]
			bp := b[p*ldb : p*ldb+n]
			for j, bv := range bp {
				c0[j] += a0 * bv
				c1[j] += a1 * bv
				c2[j] += a2 * bv
				c3[j] += a3 * bv
			}
		}
	}
	for ; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		for p := 0; p < k; p++ {
			av := a[i*ars+p*acs]
			if av == 0 {
				continue
			}
			bp := b[p*ldb : p*ldb+n]
			for j, bv := range bp {
				ci[j] += av * bv
			}
		}
	}
}

func gemmNTGo(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	for i := 0; i < m; i++ {
		ai := a[i*lda : i*lda+k]
		ci := c[i*ldc : i*ldc+n]
		for j := range ci {
			bj := b[j*ldb : j*ldb+k]
			var s0, s1, s2, s3 float32
			p := 0
			for ; p+4 <= k; p += 4 {
				s0 += ai[p] * bj[p]
				s1 += ai[p+1] * bj[p+1]
				s2 += ai[p+2] * bj[p+2]
				s3 += ai[p+3] * bj[p+3]
			}
			for ; p < k; p++ {
				s0 += ai[p] * bj[p]
			}
			s := (s0 + s1) + (s2 + s3)
			if acc {
				ci[j] += s
			} else {
				ci[j] = s
			}
		}
	}
}

// ntScratch is the scratch gemmNTWide needs: Aᵀ (k×m) and Cᵀ (n×m).
func ntScratch(m, n, k int) int { return m * (k + n) }

// gemmNTWide computes C(m×n) (+)= A(m×k)·B(n×k)ᵀ as Cᵀ = B·Aᵀ, so that the long dimension n
// runs down the rows of the register-tiled kernel and the short one (m, a batch) across its
// columns; only the two small batch-sized matrices are transposed. With the assembly kernels this
// beats the dot-product form once m fills a useful part of a vector (m ≥ 4 with AVX-512, m ≥ 16
// with AVX2, measured); it falls back to gemmNT for thinner batches or without them. scratch must hold ntScratch(m, n, k) values.
func gemmNTWide(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool, scratch []float32) {
	if !useAsm || m < 4 || (!useAVX512 && m < 16) || k == 0 || n == 0 {
		gemmNT(m, n, k, a, lda, b, ldb, c, ldc, acc)
		return
	}
	at, ct := scratch[:k*m], scratch[k*m:k*m+n*m]
	for i := 0; i < m; i++ {
		row := a[i*lda : i*lda+k]
		for p, v := range row {
			at[p*m+i] = v
		}
	}
	gemm(n, m, k, b, ldb, 1, at, m, ct, m, false)
	// Read Cᵀ in order; the m rows of C being written stay in L1 across consecutive columns.
	c = c[:(m-1)*ldc+n]
	for j := 0; j < n; j++ {
		col := ct[j*m : (j+1)*m]
		if acc {
			for i, v := range col {
				c[i*ldc+j] += v
			}
		} else {
			for i, v := range col {
				c[i*ldc+j] = v
			}
		}
	}
}
