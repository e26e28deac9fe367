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
