package nn

//go:generate python3 gen_amd64_asm.py

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
func xgetbv0() (eax uint32)

// hasAVX2FMA reports whether the CPU has AVX2 and FMA and the OS saves the YMM registers.
func hasAVX2FMA() bool {
	maxID, _, _, _ := cpuid(0, 0)
	if maxID < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	if xgetbv0()&6 != 6 { // XMM and YMM state enabled by the OS
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<5) != 0
}

// hasAVX512 reports whether the CPU has AVX-512F and the OS saves the opmask and ZMM registers.
func hasAVX512() bool {
	if !hasAVX2FMA() {
		return false
	}
	const opmaskZMM = 0xe6 // XMM, YMM, opmask, ZMM0–15 upper halves, ZMM16–31
	if xgetbv0()&opmaskZMM != opmaskZMM {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<16) != 0
}

// Micro-kernels (gemm_amd64.s): kernRxW computes C[0:R, 0:W] (+)= A[0:R, 0:k]·B[0:k, 0:W]
// keeping the C tile in YMM registers, k ≥ 1; the x8m variants cover the columns whose lanes
// are set in mask (8 int32s, the first ones -1), for a tail narrower than 8.

//go:noescape
func kern1x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern1x8(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern1x8m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern2x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern2x8(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern2x8m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern3x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern3x8(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern3x8m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern4x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern4x8(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern4x8m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern5x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern5x8(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern5x8m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern6x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern6x8(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

//go:noescape
func kern6x8m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

// AVX-512 micro-kernels: zkRxW keeps a C tile of R ≤ 8 rows and W = 32 or 16 columns in ZMM
// registers; zkRx16m covers the columns selected by mask (a tail narrower than 16).

//go:noescape
func zk1x32(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk1x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk1x16m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk2x32(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk2x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk2x16m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk3x32(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk3x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk3x16m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk4x32(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk4x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk4x16m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk5x32(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk5x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk5x16m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk6x32(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk6x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk6x16m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk7x32(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk7x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk7x16m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk8x32(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk8x16(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

//go:noescape
func zk8x16m(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

type zkernel func(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask uint16)

var (
	zkernels32  = [9]zkernel{nil, zk1x32, zk2x32, zk3x32, zk4x32, zk5x32, zk6x32, zk7x32, zk8x32}
	zkernels16  = [9]zkernel{nil, zk1x16, zk2x16, zk3x16, zk4x16, zk5x16, zk6x16, zk7x16, zk8x16}
	zkernels16m = [9]zkernel{nil, zk1x16m, zk2x16m, zk3x16m, zk4x16m, zk5x16m, zk6x16m, zk7x16m, zk8x16m}
)

// zRowBlock is how many rows of C the next AVX-512 kernel call takes when rem rows are left:
// up to 8, splitting 9–16 rows into two near-equal blocks rather than leaving a thin one.
func zRowBlock(rem int) int {
	switch {
	case rem <= 8:
		return rem
	case rem <= 16:
		return (rem + 1) / 2
	default:
		return 8
	}
}

func gemmAVX512(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	mask := uint16(1)<<(n&15) - 1
	for k0 := 0; k0 < k; k0 += kBlock {
		kc := min(kBlock, k-k0)
		accPass := acc || k0 > 0
		ak := a[k0*acs:]
		bk := b[k0*ldb:]
		for j := 0; j < n; {
			kerns, width := &zkernels32, 32
			switch {
			case j+32 <= n:
			case j+16 <= n:
				kerns, width = &zkernels16, 16
			default:
				kerns, width = &zkernels16m, 16
			}
			for i := 0; i < m; {
				r := zRowBlock(m - i)
				kerns[r](kc, &ak[i*ars], ars, acs, &bk[j], ldb, &c[i*ldc+j], ldc, accPass, mask)
				i += r
			}
			j += width
		}
	}
}

// dotRx4 computes out[r*4+j] = Σ_p a[r*lda+p]·b[j*ldb+p] for r < R, j < 4; k a positive
// multiple of 8.

//go:noescape
func dot1x4(k int, a *float32, lda int, b *float32, ldb int, out *float32)

//go:noescape
func dot2x4(k int, a *float32, lda int, b *float32, ldb int, out *float32)

type kernel func(k int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, acc bool, mask *int32)

var (
	kernels16 = [7]kernel{nil, kern1x16, kern2x16, kern3x16, kern4x16, kern5x16, kern6x16}
	kernels8  = [7]kernel{nil, kern1x8, kern2x8, kern3x8, kern4x8, kern5x8, kern6x8}
	kernels8m = [7]kernel{nil, kern1x8m, kern2x8m, kern3x8m, kern4x8m, kern5x8m, kern6x8m}
	// tailMask[8-c:] starts with c lanes set: the mask for a tail of c < 8 columns.
	tailMask = [16]int32{-1, -1, -1, -1, -1, -1, -1, -1}
)

// kBlock bounds the depth of one pass so that a 16-column panel of B (kBlock × 64 bytes)
// stays in L1 while every row block of A streams past it.
const kBlock = 256

// rowBlock is how many rows of C the next kernel call takes when rem rows are left: 6 (twelve
// independent FMA chains, enough to cover the FMA latency), but never leaving a block of 1 or 2
// rows, whose few chains would run at a fraction of the peak.
func rowBlock(rem int) int {
	switch {
	case rem <= 6:
		return rem
	case rem <= 8:
		return 4
	default:
		return 6
	}
}

func gemmAsm(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if useAVX512 {
		gemmAVX512(m, n, k, a, ars, acs, b, ldb, c, ldc, acc)
		return
	}
	var mask *int32
	if n8 := n &^ 7; n8 < n {
		mask = &tailMask[8-(n-n8)]
	}
	for k0 := 0; k0 < k; k0 += kBlock {
		kc := min(kBlock, k-k0)
		accPass := acc || k0 > 0
		ak := a[k0*acs:]
		bk := b[k0*ldb:]
		for j := 0; j < n; {
			kerns, width := &kernels16, 16
			switch {
			case j+16 <= n:
			case j+8 <= n:
				kerns, width = &kernels8, 8
			default:
				kerns, width = &kernels8m, 8
			}
			for i := 0; i < m; {
				r := rowBlock(m - i)
				kerns[r](kc, &ak[i*ars], ars, acs, &bk[j], ldb, &c[i*ldc+j], ldc, accPass, mask)
				i += r
			}
			j += width
		}
	}
}

func gemmNTAsm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	k8 := k &^ 7
	if k8 == 0 {
		gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc, acc)
		return
	}
	var out [8]float32
	n4 := n &^ 3
	for i := 0; i < m; i += 2 {
		rows := min(2, m-i)
		for j := 0; j < n4; j += 4 {
			if rows == 2 {
				dot2x4(k8, &a[i*lda], lda, &b[j*ldb], ldb, &out[0])
			} else {
				dot1x4(k8, &a[i*lda], lda, &b[j*ldb], ldb, &out[0])
			}
			for r := 0; r < rows; r++ {
				ar := a[(i+r)*lda : (i+r)*lda+k]
				cr := c[(i+r)*ldc+j : (i+r)*ldc+j+4]
				for q := range cr {
					s := out[r*4+q]
					if k8 < k {
						br := b[(j+q)*ldb : (j+q)*ldb+k]
						for p := k8; p < k; p++ {
							s += ar[p] * br[p]
						}
					}
					if acc {
						cr[q] += s
					} else {
						cr[q] = s
					}
				}
			}
		}
		if n4 < n {
			gemmNTGo(rows, n-n4, k, a[i*lda:], lda, b[n4*ldb:], ldb, c[i*ldc+n4:], ldc, acc)
		}
	}
}

// Elementwise kernels (gemm_amd64.s) for the optimizer; n is a positive multiple of 8.

//go:noescape
func axpyAVX(n int, alpha float32, x, y *float32)

//go:noescape
func momentumAVX(n int, lr, mom float32, w, grad, v *float32)

//go:noescape
func scaleAddAVX(n int, a, b float32, w, c *float32)

//go:noescape
func reluAVX(n int, x, y *float32)

//go:noescape
func reluBackAVX(n int, out, dOut, dIn *float32)

//go:noescape
func maxPoolRowAVX(ow, c int, x *float32, rowStride int, out *float32, arg *int32, base int)

//go:noescape
func anyNonFiniteAVX(n int, x *float32) bool
