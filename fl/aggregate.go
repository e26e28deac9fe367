package fl

import (
	"runtime"
	"sync"
)

// Update is one validated client update as a strategy may see it.
type Update struct {
	Client ClientID
	Delta  []float32
	Weight float64
}

// Aggregate is what the server learns from a round: always the weighted mean of the cohort's
// updates, and the individual updates only when no secure sum hides them.
type Aggregate struct {
	Mean        []float32 // Σ wᵢΔᵢ / Σ wᵢ (or the DP fixed-denominator estimate)
	TotalWeight float64
	Count       int
	Updates     []Update // nil under secure aggregation
}

// aggBlock is the number of coordinates summed across all clients before moving on, so that the
// float64 accumulator block stays in L1 while the updates stream through once.
const aggBlock = 2048

// AddScaled adds w·u to acc, coordinate by coordinate, in float64 (AVX2 where available;
// FMA rounds once where the scalar loop rounds twice, both well within float64 precision).
func AddScaled(acc []float64, u []float32, w float64) {
	acc = acc[:len(u)]
	j := addScaledFast(acc, u, w)
	for ; j+4 <= len(u); j += 4 {
		a := acc[j : j+4 : j+4]
		v := u[j : j+4 : j+4]
		a[0] += w * float64(v[0])
		a[1] += w * float64(v[1])
		a[2] += w * float64(v[2])
		a[3] += w * float64(v[3])
	}
	for ; j < len(u); j++ {
		acc[j] += w * float64(u[j])
	}
}

// WeightedSum sets dst[j] = Σᵢ weights[i]·updates[i][j], accumulating in float64. The work is
// split by coordinate ranges across GOMAXPROCS goroutines; each range is summed block by block so
// every update is read exactly once. All updates must have len(dst) coordinates.
func WeightedSum(dst []float64, updates [][]float32, weights []float64) {
	n := len(dst)
	workers := runtime.GOMAXPROCS(0)
	if n < 64*aggBlock || workers < 2 {
		weightedSumRange(dst, updates, weights, 0, n)
		return
	}
	per := (n + workers - 1) / workers
	per = (per + aggBlock - 1) / aggBlock * aggBlock
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Go(func() { weightedSumRange(dst, updates, weights, lo, hi) })
	}
	wg.Wait()
}

func weightedSumRange(dst []float64, updates [][]float32, weights []float64, lo, hi int) {
	clear(dst[lo:hi])
	for b := lo; b < hi; b += aggBlock {
		e := min(b+aggBlock, hi)
		acc := dst[b:e]
		i := 0
		for ; i+4 <= len(updates); i += 4 {
			u := [4][]float32{updates[i][b:e], updates[i+1][b:e], updates[i+2][b:e], updates[i+3][b:e]}
			w := [4]float64{weights[i], weights[i+1], weights[i+2], weights[i+3]}
			done := addScaled4Fast(acc, u, w)
			for k := range 4 {
				AddScaled(acc[done:], u[k][done:], w[k])
			}
		}
		for ; i < len(updates); i++ {
			AddScaled(acc, updates[i][b:e], weights[i])
		}
	}
}
