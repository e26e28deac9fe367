package secagg

import (
	mrand "math/rand/v2"
	"testing"
)

func TestPackRoundTrip(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for bits := 1; bits <= 32; bits++ {
		for _, n := range []int{1, 2, 3, 7, 8, 9, 31, 33, 100, 1001} {
			vals := make([]uint32, n)
			mask := uint32(uint64(1)<<bits - 1)
			for i := range vals {
				vals[i] = r.Uint32() // high bits must be dropped by packing
			}
			packed := make([]byte, packedSize(n, bits))
			packRing(packed, vals, bits)
			if pad := len(packed)*8 - n*bits; pad > 0 && packed[len(packed)-1]>>(8-pad) != 0 {
				t.Fatalf("bits %d n %d: padding not zero", bits, n)
			}
			acc := make([]uint32, n)
			for i := range acc {
				acc[i] = uint32(i)
			}
			addPacked(acc, packed, bits)
			for i := range acc {
				if want := uint32(i) + vals[i]&mask; acc[i] != want {
					t.Fatalf("bits %d n %d entry %d: %d, want %d", bits, n, i, acc[i], want)
				}
			}
		}
	}
}

func BenchmarkAddPacked(b *testing.B) {
	vals := make([]uint32, 100_001)
	packed := make([]byte, packedSize(len(vals), 26))
	acc := make([]uint32, len(vals))
	t := startCPU(b, int64(len(packed)))
	for b.Loop() {
		addPacked(acc, packed, 26)
	}
	t.stop()
}

func BenchmarkPackRing(b *testing.B) {
	vals := make([]uint32, 100_001)
	packed := make([]byte, packedSize(len(vals), 26))
	t := startCPU(b, int64(len(packed)))
	for b.Loop() {
		packRing(packed, vals, 26)
	}
	t.stop()
}

func BenchmarkEncodeInput(b *testing.B) {
	cfg := Config{Round: 1, Clients: 500, Dim: 100_000, Bits: 16, ClipRange: 1, MaxWeight: 1,
		Graph: GraphComplete, Degree: 499, Threshold: 300}
	u, _, _ := inputs(cfg.Dim)(1)
	dst := make([]uint32, cfg.Dim+1)
	rs := testStream(b, 1)
	t := startCPU(b, int64(4*cfg.Dim))
	for b.Loop() {
		if err := cfg.encodeInput(u, 1, rs, dst); err != nil {
			b.Fatal(err)
		}
	}
	t.stop()
}
