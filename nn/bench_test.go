package nn

import (
	"fmt"
	"math/rand/v2"
	"shoal/internal/cputime"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// benchTrain reports training throughput on random 28×28 data: one epoch over 600 examples
// (a McMahan client's share of MNIST) per iteration.
func benchTrain(b *testing.B, arch string, batch int) {
	rng := rand.New(rand.NewPCG(1, 2))
	m, err := New(arch, mnist, 10, rng)
	if err != nil {
		b.Fatal(err)
	}
	const n = 600
	x, y := randData(rng, n, mnist, 10)
	for i := range x {
		x[i] = (x[i] + 1) / 4 // roughly MNIST's range, keeps random-label training finite
	}
	cfg := TrainConfig{Epochs: 1, BatchSize: batch, LR: 0.01}
	if _, err := m.Train(x, y, cfg, rng); err != nil { // warm-up: scratch buffers
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := cputime.Process()
	for b.Loop() {
		if _, err := m.Train(x, y, cfg, rng); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, n, cputime.Process()-cpu0)
}

// reportRates reports examples per wall-second and, where measurable, per CPU-second.
func reportRates(b *testing.B, perOp int, cpu time.Duration) {
	b.ReportMetric(float64(perOp*b.N)/b.Elapsed().Seconds(), "examples/s")
	if cpu > 0 {
		b.ReportMetric(float64(perOp*b.N)/cpu.Seconds(), "examples/cpu-s")
	}
}

func BenchmarkTrain2NNB10(b *testing.B) { benchTrain(b, "2nn", 10) }
func BenchmarkTrain2NNB64(b *testing.B) { benchTrain(b, "2nn", 64) }
func BenchmarkTrainCNNB32(b *testing.B) { benchTrain(b, "cnn", 32) }

func benchEvaluate(b *testing.B, arch string) {
	rng := rand.New(rand.NewPCG(1, 2))
	m, _ := New(arch, mnist, 10, rng)
	const n = 10000
	x, y := randData(rng, n, mnist, 10)
	cpu0 := cputime.Process()
	for b.Loop() {
		if _, _, err := m.Evaluate(x, y); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, n, cputime.Process()-cpu0)
}

func BenchmarkEvaluate2NN10k(b *testing.B) { benchEvaluate(b, "2nn") }
func BenchmarkEvaluateCNN10k(b *testing.B) { benchEvaluate(b, "cnn") }

// The GEMM shapes the models run, as (name, m, n, k, A transposed?): the 2nn's first layer
// forward (X·W) and weight gradient (Xᵀ·dY) at B=10 and 64, and the cnn's second convolution
// per image (col·W, 196×800·800×64).
var benchShapes = []struct {
	name    string
	m, n, k int
	transA  bool
}{
	{"fwd_10x784x200", 10, 200, 784, false},
	{"dW_784x200x10", 784, 200, 10, true},
	{"fwd_64x784x200", 64, 200, 784, false},
	{"dW_784x200x64", 784, 200, 64, true},
	{"conv2_196x64x800", 196, 64, 800, false},
	{"conv2dW_800x64x196", 800, 64, 196, true},
}

func BenchmarkGemm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range benchShapes {
		a, bm, c := randSlice(rng, s.m*s.k), randSlice(rng, s.k*s.n), make([]float32, s.m*s.n)
		flops := 2 * float64(s.m*s.n*s.k)
		ars, acs, lda, tA := s.k, 1, s.k, blas.NoTrans
		if s.transA {
			ars, acs, lda, tA = 1, s.m, s.m, blas.Trans
		}
		run := func(name string, f func()) {
			b.Run(fmt.Sprintf("%s/%s", s.name, name), func(b *testing.B) {
				cpu0 := cputime.Process()
				for b.Loop() {
					f()
				}
				reportGFLOPs(b, flops, cputime.Process()-cpu0)
			})
		}
		savedAsm, saved512 := useAsm, useAVX512
		ours := func(asm, avx512 bool) func() {
			return func() {
				useAsm, useAVX512 = asm, avx512
				gemm(s.m, s.n, s.k, a, ars, acs, bm, s.n, c, s.n, false)
			}
		}
		if hasAVX512() {
			run("avx512", ours(true, true))
		}
		if hasAVX2FMA() {
			run("avx2", ours(true, false))
		}
		run("go", ours(false, false))
		useAsm, useAVX512 = savedAsm, saved512
		run("gonum", func() {
			gonum.Implementation{}.Sgemm(tA, blas.NoTrans, s.m, s.n, s.k, 1, a, lda, bm, s.n, 0, c, s.n)
		})
	}
}

func BenchmarkGemmNT(b *testing.B) {
	// Input gradients dY·Wᵀ: the 2nn's second layer at B=10 (10×200 · (200×200)ᵀ) and the cnn's
	// first dense layer at B=32 (32×512 · (3136×512)ᵀ).
	for _, s := range []struct {
		name    string
		m, n, k int
	}{{"2nn_10x200x200", 10, 200, 200}, {"cnn_32x3136x512", 32, 3136, 512}} {
		rng := rand.New(rand.NewPCG(1, 2))
		m, n, k := s.m, s.n, s.k
		a, bm, c := randSlice(rng, m*k), randSlice(rng, n*k), make([]float32, m*n)
		scratch := make([]float32, ntScratch(m, n, k))
		flops := 2.0 * float64(m*n*k)
		savedAsm, saved512 := useAsm, useAVX512
		run := func(name string, asm, avx512 bool, f func()) {
			if (asm && !hasAVX2FMA()) || (avx512 && !hasAVX512()) {
				return
			}
			b.Run(s.name+"/"+name, func(b *testing.B) {
				useAsm, useAVX512 = asm, avx512
				defer func() { useAsm, useAVX512 = savedAsm, saved512 }()
				cpu0 := cputime.Process()
				for b.Loop() {
					f()
				}
				reportGFLOPs(b, flops, cputime.Process()-cpu0)
			})
		}
		wide := func() { gemmNTWide(m, n, k, a, k, bm, k, c, n, false, scratch) }
		dot := func() { gemmNT(m, n, k, a, k, bm, k, c, n, false) }
		run("wide-avx512", true, true, wide)
		run("wide-avx2", true, false, wide)
		run("dot-avx2", true, false, dot)
		run("go", false, false, dot)
		run("gonum", savedAsm, saved512, func() {
			gonum.Implementation{}.Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, a, k, bm, k, 0, c, n)
		})
	}
}

// reportGFLOPs reports GFLOP/s per wall-second and per CPU-second. gonum's Sgemm may use both
// cores for large products, which the CPU figure accounts for.
func reportGFLOPs(b *testing.B, flops float64, cpu time.Duration) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu > 0 {
		b.ReportMetric(flops*float64(b.N)/cpu.Seconds()/1e9, "GFLOP/cpu-s")
	}
}
