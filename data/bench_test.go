package data

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
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

// BenchmarkGatherBound copies the same number of bytes as a batch of 64 rows, but contiguous:
// the memory-bandwidth bound that Gather's random row access is compared against.
func BenchmarkGatherBound(b *testing.B) {
	const n, dim, batch = 60000, 784, 64
	src := make([]float32, n*dim)
	for i := range src {
		src[i] = float32(i % 255)
	}
	dst := make([]float32, batch*dim)
	r := rand.New(rand.NewPCG(1, 2))
	b.SetBytes(int64(batch * dim * 4))
	for b.Loop() {
		at := r.IntN(n-batch) * dim
		copy(dst, src[at:at+batch*dim])
	}
}

// BenchmarkInflateTrainImages only decompresses MNIST's training images (9.9 MB of gzip into
// 47 MB) to io.Discard: one DEFLATE stream cannot be split across cores, so this bounds
// LoadMNIST from below.
func BenchmarkInflateTrainImages(b *testing.B) {
	dir, err := MNISTDir()
	if err != nil {
		b.Skipf("real MNIST not available: %v", err)
	}
	compressed, err := os.ReadFile(filepath.Join(dir, "train-images-idx3-ubyte.gz"))
	if err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		zr, err := gzip.NewReader(bytes.NewReader(compressed))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, zr); err != nil {
			b.Fatal(err)
		}
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
	b.Run("LoadCSV", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if _, err := LoadCSV(bytes.NewReader(in), "bench", "label"); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The bound: encoding/csv splitting the same input into fields, without number parsing.
	b.Run("csv-fields-only", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			cr := csv.NewReader(bytes.NewReader(in))
			cr.ReuseRecord = true
			for {
				if _, err := cr.Read(); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkSynthetic generates Synthetic(1,1) for the paper's 30 clients.
func BenchmarkSynthetic(b *testing.B) {
	for b.Loop() {
		if _, err := Synthetic(1, 1, 30, 1); err != nil {
			b.Fatal(err)
		}
	}
}
