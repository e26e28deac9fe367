package nn

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// FuzzTrain feeds New, Train and Evaluate arbitrary shapes, labels, inputs and configurations:
// whatever the input, they must return an error or a finite result, never panic, and a call
// that errors before training must leave the parameters untouched.
func FuzzTrain(f *testing.F) {
	f.Add(uint8(0), uint8(1), uint8(1), uint8(6), uint8(3), uint8(9), uint8(4), uint8(1), float32(0.1), float32(0), float32(0), float32(0), []byte("0123456789abcdef"))
	f.Add(uint8(1), uint8(1), uint8(1), uint8(5), uint8(2), uint8(7), uint8(10), uint8(2), float32(0.05), float32(0.9), float32(1e-4), float32(0.1), []byte{255, 255, 128, 127, 0, 1})
	f.Add(uint8(2), uint8(2), uint8(5), uint8(4), uint8(3), uint8(4), uint8(3), uint8(1), float32(0.01), float32(0.5), float32(0), float32(0), []byte{7, 7, 7, 7})
	f.Add(uint8(1), uint8(1), uint8(1), uint8(3), uint8(2), uint8(3), uint8(0), uint8(0), float32(-1), float32(1), float32(-1), float32(-1), []byte{})
	f.Fuzz(func(t *testing.T, arch, c, h, w, classes, n, batch, epochs uint8, lr, mom, wd, mu float32, raw []byte) {
		names := Names()
		in := Shape{int(c % 4), int(h % 9), int(w % 9)}
		m, err := New(names[int(arch)%len(names)], in, int(classes%6), rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			return
		}
		// Inputs and labels from raw: each example takes float bits for its values and one byte
		// for its label; a short raw leaves the data mismatched in size, which must be an error.
		d, count := in.Size(), int(n%12)
		x := make([]float32, 0, count*d)
		y := make([]int32, 0, count)
		for i := 0; len(raw) >= 4 && len(x) < count*d; i++ {
			x = append(x, math.Float32frombits(binary.LittleEndian.Uint32(raw)))
			raw = raw[min(len(raw), 1+i%4):]
		}
		for i := 0; i < count && i < len(raw); i++ {
			y = append(y, int32(int8(raw[i]))%int32(m.Classes()+1))
		}
		center := make([]float32, m.NumParams())
		cfg := TrainConfig{Epochs: int(epochs % 3), BatchSize: int(batch), LR: lr, Momentum: mom, WeightDecay: wd, ProxMu: mu, ProxCenter: center}
		before := append([]float32(nil), m.Params()...)
		loss, err := m.Train(x, y, cfg, rand.New(rand.NewPCG(3, 4)))
		if err != nil {
			if cfg.validate(m.NumParams()) != nil || m.checkData(x, y) != nil {
				for i, v := range m.Params() {
					if math.Float32bits(v) != math.Float32bits(before[i]) {
						t.Fatalf("rejected input changed parameter %d: %v", i, err)
					}
				}
			}
			return
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			t.Fatalf("Train returned loss %v without an error", loss)
		}
		if _, acc, err := m.Evaluate(x, y); err != nil || acc < 0 || acc > 1 {
			t.Fatalf("Evaluate on data Train accepted: accuracy %v, error %v", acc, err)
		}
	})
}
