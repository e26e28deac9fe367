package fl

import "golang.org/x/sys/cpu"

var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func addScaledAVX2(acc []float64, u []float32, w float64)

// addScaledFast does as much of AddScaled as the vector kernel can and returns how many
// coordinates it did.
func addScaledFast(acc []float64, u []float32, w float64) int {
	if !useAVX2 || len(u) < 16 {
		return 0
	}
	addScaledAVX2(acc, u, w)
	return len(u) &^ 15
}

//go:noescape
func addScaled4AVX2(acc *float64, u *[4]*float32, w *[4]float64, n int)

// addScaled4Fast adds four weighted updates at once where the vector kernel is available and
// returns how many leading coordinates it did.
func addScaled4Fast(acc []float64, u [4][]float32, w [4]float64) int {
	n := len(acc)
	for _, v := range u {
		n = min(n, len(v))
	}
	if !useAVX2 || n < 8 {
		return 0
	}
	ptrs := [4]*float32{&u[0][0], &u[1][0], &u[2][0], &u[3][0]}
	addScaled4AVX2(&acc[0], &ptrs, &w, n)
	return n &^ 7
}
