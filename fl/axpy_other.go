//go:build !amd64

package fl

func addScaledFast([]float64, []float32, float64) int { return 0 }

func addScaled4Fast([]float64, [4][]float32, [4]float64) int { return 0 }
