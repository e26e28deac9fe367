package securesum

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"testing"

	"shoal/fl"
)

// drive runs a protocol the way the engine does: stage by stage, each client's half answering
// the server half, with drop[id] = the stage index at which client id stops answering.
func drive(t *testing.T, p fl.SecureSum, round int, inputs map[fl.ClientID]fl.SumInput, dim int, drop map[fl.ClientID]int) (fl.SumResult, error) {
	t.Helper()
	var ids []fl.ClientID
	clients := map[fl.ClientID]fl.SumClient{}
	for id, in := range inputs {
		c, err := p.NewClient(round, id, in)
		if err != nil {
			t.Fatal(err)
		}
		clients[id] = c
		ids = append(ids, id)
	}
	maxWeight := 1.0
	for _, in := range inputs {
		maxWeight = max(maxWeight, in.Weight)
	}
	srv, err := p.NewServer(round, ids, dim, maxWeight)
	if err != nil {
		return fl.SumResult{}, err
	}
	for stage := 0; ; stage++ {
		msgs, done, err := srv.Next()
		if err != nil {
			return fl.SumResult{}, err
		}
		if done {
			break
		}
		for id, m := range msgs {
			if at, ok := drop[id]; ok && stage >= at {
				srv.Drop(id)
				continue
			}
			reply, err := clients[id].Handle(m)
			if err == nil {
				err = srv.Receive(id, reply)
			}
			if err != nil {
				t.Fatalf("stage %d client %d: %v", stage, id, err)
			}
		}
	}
	return srv.Result()
}

func seeded(seed uint64) func(int, fl.ClientID) io.Reader {
	return func(round int, id fl.ClientID) io.Reader {
		var key [32]byte
		key[0], key[1], key[2] = byte(seed), byte(round), byte(id+1)
		return rand.NewChaCha8(key)
	}
}

func TestSecAggAdapterSumsWeightedUpdatesUnderDropout(t *testing.T) {
	const n, dim = 12, 300
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := map[fl.ClientID]fl.SumInput{}
	for i := range n {
		u := make([]float32, dim)
		for j := range u {
			u[j] = float32(rng.Float64()*0.8 - 0.4)
		}
		inputs[fl.ClientID(100+i*7)] = fl.SumInput{Update: u, Weight: float64(1 + rng.IntN(600)), Unclipped: float64(i % 2)}
	}
	for _, plus := range []bool{false, true} {
		p, err := NewSecAgg(SecAggOptions{Plus: plus, MaxDropout: 0.3, MaxCorrupt: 0.1, Rand: seeded(3)})
		if err != nil {
			t.Fatal(err)
		}
		for stage, name := range p.Stages() {
			drop := map[fl.ClientID]int{100: stage, 114: stage, 121: stage} // 3 of 12 = 25% ≤ 30%
			res, err := drive(t, p, 5, inputs, dim, drop)
			if err != nil {
				t.Fatalf("plus=%v, drop at %s: %v", plus, name, err)
			}
			// Clients that dropped before sending their masked input are not in the sum.
			var want []float64 = make([]float64, dim)
			var wantW, wantU float64
			count := 0
			for id, in := range inputs {
				if at, ok := drop[id]; ok && at <= 2 {
					continue
				}
				count++
				wantW += in.Weight
				wantU += in.Unclipped
				for j, v := range in.Update {
					want[j] += in.Weight * float64(v)
				}
			}
			if res.Count != count {
				t.Fatalf("plus=%v drop at %s: %d in the sum, want %d", plus, name, res.Count, count)
			}
			// Quantisation: each client's entry is off by < one step of 2·0.5/(2^16−1), times MaxWeight.
			tol := float64(count) * 600 * 1.0 / 65535
			for j := range want {
				if math.Abs(res.Sum[j]-want[j]) > tol {
					t.Fatalf("plus=%v drop at %s: entry %d = %v, want %v ± %v", plus, name, j, res.Sum[j], want[j], tol)
				}
			}
			if math.Abs(res.Weight-wantW) > float64(count)*600/65535+1e-9 || math.Abs(res.Unclipped-wantU) > float64(count)*2/65535+1e-9 {
				t.Fatalf("plus=%v drop at %s: weight %v unclipped %v, want %v %v", plus, name, res.Weight, res.Unclipped, wantW, wantU)
			}
		}
	}
}

func TestSecAggAdapterAbandonsBelowThreshold(t *testing.T) {
	inputs := map[fl.ClientID]fl.SumInput{}
	drop := map[fl.ClientID]int{}
	for i := range 10 {
		inputs[fl.ClientID(i)] = fl.SumInput{Update: []float32{0.1, 0.2}, Weight: 1}
		if i < 6 {
			drop[fl.ClientID(i)] = 2 // 60% drop before the masked input: beyond the 10% tolerated
		}
	}
	p, _ := NewSecAgg(SecAggOptions{MaxDropout: 0.1, Rand: seeded(4)})
	_, err := drive(t, p, 1, inputs, 2, drop)
	if !errors.Is(err, fl.ErrRoundAbandoned) {
		t.Fatalf("err = %v, want a round abandoned", err)
	}
	one := map[fl.ClientID]fl.SumInput{7: {Update: []float32{1}, Weight: 1}}
	if _, err := drive(t, p, 1, one, 1, nil); !errors.Is(err, fl.ErrRoundAbandoned) {
		t.Fatalf("a single client must not be 'securely' summed: %v", err)
	}
}

func TestSecAggSetupRejectsMalformed(t *testing.T) {
	p, _ := NewSecAgg(SecAggOptions{Rand: seeded(5)})
	c, _ := p.NewClient(1, 3, fl.SumInput{Update: []float32{0.1}, Weight: 1})
	for _, m := range [][]byte{nil, []byte("SHOALSA1"), make([]byte, setupSize)} {
		if _, err := c.Handle(m); err == nil {
			t.Fatalf("malformed setup %q accepted", m)
		}
	}
	if _, err := p.NewClient(1, 3, fl.SumInput{Update: []float32{float32(math.NaN())}, Weight: 1}); err == nil {
		t.Fatal("NaN input accepted")
	}
	for _, o := range []SecAggOptions{{Bits: 40}, {ClipRange: -1}, {MaxDropout: 1}} {
		if _, err := NewSecAgg(o); err == nil {
			t.Fatalf("options %+v accepted", o)
		}
	}
}

func FuzzDecodeSetup(f *testing.F) {
	p, _ := NewSecAgg(SecAggOptions{Rand: seeded(6)})
	cfg, _ := p.config(3, 5, 10, 1)
	f.Add(encodeSetup(&cfg, 2))
	f.Add([]byte("SHOALSA1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, idx, err := decodeSetup(b)
		if err == nil && (cfg.Validate() != nil || int(idx) >= cfg.Clients) {
			t.Fatal("decoder accepted an invalid setup")
		}
	})
}
