package data

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkGather copies minibatches of MNIST-sized rows (784 float32) at random indices, the
// training engine's per-step data access; bytes/s is the copy bandwidth.
func BenchmarkGather(b *testing.B) {
	const n, dim = 60000, 784
	d := &Dataset{X: make([]float32, n*dim), Y: make([]int32, n), Dim: dim, C: 1, H: 28, W: 28, Classes: 10}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range d.X {
		d.X[i] = float32(i % 255)
	}
	for _, batch := range []int{10, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			idx := make([]int, batch)
			var x []float32
			var y []int32
			b.SetBytes(int64(batch * dim * 4))
			for b.Loop() {
				for i := range idx {
					idx[i] = r.IntN(n)
				}
				x, y = d.Gather(idx, x, y)
			}
		})
	}
}

// BenchmarkLoadCSV parses a 20,000-row CSV of 20 numeric features and a string label.
func BenchmarkLoadCSV(b *testing.B) {
	var buf bytes.Buffer
	for j := range 20 {
		fmt.Fprintf(&buf, "f%d,", j)
	}
	buf.WriteString("label\n")
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		for range 20 {
			buf.WriteString(strconv.FormatFloat(r.NormFloat64(), 'g', 7, 32))
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, "class%d\n", r.IntN(5))
	}
	in := buf.Bytes()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := LoadCSV(bytes.NewReader(in), "bench", "label"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSynthetic generates Synthetic(1,1) for the paper's 30 clients.
func BenchmarkSynthetic(b *testing.B) {
	for b.Loop() {
		if _, err := Synthetic(1, 1, 30, 1); err != nil {
			b.Fatal(err)
		}
	}
}
