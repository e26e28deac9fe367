//go:build !amd64

package nn

func hasAVX2FMA() bool { return false }

func gemmAsm(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	gemmGo(m, n, k, a, ars, acs, b, ldb, c, ldc, acc)
}

func gemmNTAsm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc, acc)
}
