package fl

import (
	"fmt"
	"math"
	"math/rand/v2"
	"shoal/internal/cputime"
	"testing"
	"time"
)

func TestWeightedSumMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, aggBlock + 3, 64*aggBlock + 5} {
		updates := make([][]float32, 13)
		weights := make([]float64, len(updates))
		for i := range updates {
			updates[i] = make([]float32, n)
			for j := range updates[i] {
				updates[i][j] = float32(rng.NormFloat64())
			}
			weights[i] = rng.Float64() * 100
		}
		got := make([]float64, n)
		for j := range got {
			got[j] = math.NaN() // WeightedSum must overwrite, not add to, dst
		}
		WeightedSum(got, updates, weights)
		for j := range n {
			var want float64
			for i := range updates {
				want += weights[i] * float64(updates[i][j])
			}
			if math.Abs(got[j]-want) > 1e-9*(1+math.Abs(want)) {
				t.Fatalf("n=%d coord %d: got %v want %v", n, j, got[j], want)
			}
		}
	}
}

// BenchmarkWeightedSum is the aggregation benchmark: 100 clients × 1,000,000 float32
// parameters. SetBytes counts the update data consumed, so the reported MB/s is its throughput.
func BenchmarkWeightedSum(b *testing.B) {
	for _, shape := range []struct{ clients, dim int }{{100, 1_000_000}, {10, 199_210}} {
		b.Run(fmt.Sprintf("clients=%d/dim=%d", shape.clients, shape.dim), func(b *testing.B) {
			updates := make([][]float32, shape.clients)
			weights := make([]float64, shape.clients)
			for i := range updates {
				updates[i] = make([]float32, shape.dim)
				for j := range updates[i] {
					updates[i][j] = float32(j%97) * 1e-3
				}
				weights[i] = float64(600 + i)
			}
			dst := make([]float64, shape.dim)
			b.SetBytes(int64(4 * shape.clients * shape.dim))
			c0 := cputime.Process()
			for b.Loop() {
				WeightedSum(dst, updates, weights)
			}
			reportCPU(b, c0)
		})
	}
}

// BenchmarkMemoryRead is the bound for BenchmarkWeightedSum: copying the same 100 × 1,000,000
// float32 updates into one cache-resident buffer reads every byte once with the runtime's
// vectorised memmove, about as fast as this machine streams memory.
func BenchmarkMemoryRead(b *testing.B) {
	const clients, dim = 100, 1_000_000
	updates := make([][]float32, clients)
	for i := range updates {
		updates[i] = make([]float32, dim)
		for j := range updates[i] {
			updates[i][j] = float32(j)
		}
	}
	block := make([]float32, aggBlock)
	b.SetBytes(4 * clients * dim)
	c0 := cputime.Process()
	defer reportCPU(b, c0)
	for b.Loop() {
		for lo := 0; lo < dim; lo += aggBlock {
			hi := min(lo+aggBlock, dim)
			for _, u := range updates {
				copy(block, u[lo:hi])
			}
		}
	}
}

func TestFirstNonFinite(t *testing.T) {
	for _, n := range []int{0, 1, 5, 1000} {
		v := make([]float32, n)
		if got := firstNonFinite(v); got != -1 {
			t.Fatalf("clean vector of %d: got %d", n, got)
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			for _, at := range []int{0, n / 2, n - 1} {
				if n == 0 {
					continue
				}
				w := make([]float32, n)
				w[at] = bad
				if got := firstNonFinite(w); got != at {
					t.Fatalf("n=%d %v at %d: got %d", n, bad, at, got)
				}
			}
		}
	}
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cputime.Process()-start)/1e6/float64(b.N), "cpu-ms/op")
}
