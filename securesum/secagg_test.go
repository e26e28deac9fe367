package securesum

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"shoal/fl"
	"shoal/privacy"
	"shoal/secagg"
	"shoal/strategy"
)

// drive runs a protocol the way the engine does: stage by stage, each client's half answering
// the server half, with drop[id] = the stage index at which client id stops answering.
func drive(t *testing.T, p fl.SecureSum, round int, inputs map[fl.ClientID]fl.SumInput, dim int, drop map[fl.ClientID]int) (fl.SumResult, error) {
	t.Helper()
	return driveTampered(t, p, round, inputs, dim, drop, nil)
}

// driveTampered is drive with a client that does not follow the protocol: tamper rewrites the
// replies clients send at each stage.
func driveTampered(t *testing.T, p fl.SecureSum, round int, inputs map[fl.ClientID]fl.SumInput, dim int, drop map[fl.ClientID]int,
	tamper func(stage int, id fl.ClientID, reply []byte) []byte) (fl.SumResult, error) {
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
			if err == nil && tamper != nil {
				reply = tamper(stage, id, reply)
			}
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
	for _, m := range [][]byte{nil, []byte("SHOALSA2"), make([]byte, setupSize)} {
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
	f.Add([]byte("SHOALSA2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, idx, err := decodeSetup(b)
		if err == nil && (cfg.Validate() != nil || int(idx) >= cfg.Clients) {
			t.Fatal("decoder accepted an invalid setup")
		}
	})
}

// shiftMaskedEntry adds delta (mod 2^k) to entry i of a secagg MaskedInput message: the 18-byte
// header, the ring bits k (u8), the entry count (u32), then the entries packed k bits each in
// little-endian bit order. Any client can send this; the masks cancel all the same.
func shiftMaskedEntry(t *testing.T, msg []byte, i int, delta uint32) []byte {
	t.Helper()
	if h, err := secagg.Peek(msg); err != nil || h.Type != secagg.MsgMaskedInput {
		t.Fatalf("not a masked input: %v %v", h.Type, err)
	}
	out := bytes.Clone(msg)
	k := int(out[18])
	body := out[23:]
	var v uint32
	for b := range k {
		bit := i*k + b
		v |= uint32(body[bit/8]>>(bit%8)&1) << b
	}
	v = (v + delta) & (1<<k - 1)
	for b := range k {
		bit := i*k + b
		body[bit/8] = body[bit/8]&^(1<<(bit%8)) | byte(v>>b&1)<<(bit%8)
	}
	return out
}

// secTransport is an in-process transport for the engine's secure path: client i holds a fixed
// update and example count every round; tamper, if set, rewrites the protocol replies.
type secTransport struct {
	proto    fl.SecureSum
	updates  [][]float32
	examples int
	clients  map[fl.ClientID]fl.SumClient
	tamper   func(round, stage int, id fl.ClientID, reply []byte) []byte
}

func (s *secTransport) NumClients() int { return len(s.updates) }

func (s *secTransport) Fit(_ context.Context, cohort []fl.ClientID, ins fl.FitIns, deliver func(fl.FitOutcome)) error {
	s.clients = map[fl.ClientID]fl.SumClient{}
	for _, id := range cohort {
		in := fl.SumInput{Update: slices.Clone(s.updates[id]), Weight: ins.Config.Weight(s.examples), Unclipped: 1}
		c, err := s.proto.NewClient(ins.Round, id, in)
		if err != nil {
			deliver(fl.FitOutcome{Client: id, Err: err})
			continue
		}
		s.clients[id] = c
		deliver(fl.FitOutcome{Client: id, Res: fl.FitRes{NumExamples: s.examples, Loss: 0.5, Unclipped: 1}})
	}
	return nil
}

func (s *secTransport) Evaluate(context.Context, []fl.ClientID, []float32, func(fl.EvalOutcome)) error {
	return nil
}

func (s *secTransport) Exchange(_ context.Context, round, stage int, msgs map[fl.ClientID][]byte, deliver func(fl.ClientID, []byte, error)) error {
	ids := slices.Sorted(func(yield func(fl.ClientID) bool) {
		for id := range msgs {
			if !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		reply, err := fl.HandleSafely(s.clients[id], msgs[id])
		if err == nil && s.tamper != nil {
			reply = s.tamper(round, stage, id, reply)
		}
		deliver(id, reply, err)
	}
	return nil
}

// TestAttackRingWrapAbandonsRound: one client adds a constant to the weight entry of its
// masked input so that the ring sum of the weights wraps to 0, or to a single quantisation step.
// The masks still cancel and the decoded weight is what the attacker chose. Before the fix the
// engine divided the sum by it: with 0 the mean was ±Inf and the run stopped (later, the
// engine's own non-finite check abandoned the round, without saying why); with one step the mean
// is finite but some 10^5 times too large, and it went into the model. Now the adapter's server
// refuses the out-of-range sum: the round is abandoned (ErrRoundAbandoned, naming the round and
// the weight), the model is left unchanged, and the run goes on.
func TestAttackRingWrapAbandonsRound(t *testing.T) {
	const n, dim, rounds, attacked = 8, 40, 3, 2
	rng := rand.New(rand.NewPCG(5, 6))
	updates := make([][]float32, n)
	mean := make([]float64, dim)
	for i := range updates {
		updates[i] = make([]float32, dim)
		for j := range dim {
			updates[i][j] = float32(0.2*rng.Float64() - 0.1)
			mean[j] += float64(updates[i][j]) / n
		}
	}
	// Every client has 5 examples: weight 5 = the round's largest, quantised to 2^16 − 1; the
	// weights add up to n·(2^16 − 1) in Z_{2^19}. The attacker adds what takes that to `to`.
	const k = 16 + 3
	for _, to := range []uint32{0, 1} {
		for _, plus := range []bool{false, true} {
			p, err := NewSecAgg(SecAggOptions{Plus: plus, MaxDropout: 0.2, MaxCorrupt: 0.1, Rand: seeded(21)})
			if err != nil {
				t.Fatal(err)
			}
			shift := uint32((1<<k + int(to) - n*65535) % (1 << k))
			tr := &secTransport{proto: p, updates: updates, examples: 5,
				tamper: func(round, stage int, id fl.ClientID, reply []byte) []byte {
					if round == attacked && stage == 2 && id == 3 {
						return shiftMaskedEntry(t, reply, dim+1, shift)
					}
					return reply
				}}
			strat, err := strategy.New("fedavg", nil)
			if err != nil {
				t.Fatal(err)
			}
			sampler, _ := fl.NewFractionSampler(1, 1)
			e := &fl.Engine{Config: fl.EngineConfig{Rounds: rounds, MinResults: 2, Fit: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}},
				Strategy: strat, Sampler: sampler, Transport: tr, Source: rand.NewPCG(1, 2), SecureSum: p}
			global := make([]float32, dim)
			hist, err := e.Run(context.Background(), global)
			if err != nil {
				t.Fatalf("weight to %d, plus=%v: the attack stopped the run: %v", to, plus, err)
			}
			if len(hist) != rounds {
				t.Fatalf("weight to %d, plus=%v: %d rounds ran, want %d", to, plus, len(hist), rounds)
			}
			for _, r := range hist {
				if (r.Abandoned != "") != (r.Round == attacked) {
					t.Fatalf("weight to %d, plus=%v: round %d abandoned %q", to, plus, r.Round, r.Abandoned)
				}
			}
			if a := hist[attacked-1].Abandoned; !strings.Contains(a, "round abandoned") || !strings.Contains(a, "secagg round 2") || !strings.Contains(a, "weight") {
				t.Fatalf("weight to %d, plus=%v: abandoned round says %q, want the round and the weight named", to, plus, a)
			}
			// Two clean rounds added the mean twice; the attacked round added nothing.
			for j := range dim {
				if d := float64(global[j]) - 2*mean[j]; math.IsNaN(d) || math.Abs(d) > 2*0.5/65535*2 {
					t.Fatalf("weight to %d, plus=%v: coordinate %d = %v, want 2·mean = %v", to, plus, j, global[j], 2*mean[j])
				}
			}
		}
	}
}

// The adapter's server refuses every sum outside the range of honest inputs: a coordinate
// beyond count·ClipRange·maxWeight, an unclipped count below 0, a total weight below count·1
// or wrapped to 0. Honest extremes (every input at the clip, weight at its least) pass.
func TestSecAggFeasibleRange(t *testing.T) {
	const n, dim = 6, 5
	inputs := map[fl.ClientID]fl.SumInput{}
	for i := range n {
		u := make([]float32, dim)
		for j := range u {
			u[j] = 0.5 // at the clip range: the largest honest entry
		}
		inputs[fl.ClientID(i)] = fl.SumInput{Update: u, Weight: 1, Unclipped: float64(i % 2)}
	}
	inputs[0] = fl.SumInput{Update: inputs[0].Update, Weight: 100, Unclipped: 0} // maxWeight 100
	p, _ := NewSecAgg(SecAggOptions{MaxDropout: 0.2, Rand: seeded(22)})
	res, err := drive(t, p, 4, inputs, dim, nil)
	if err != nil {
		t.Fatalf("honest extremes refused: %v", err)
	}
	if res.Count != n || res.Weight < 104.9 || res.Weight > 105.1 {
		t.Fatalf("result %+v", res)
	}
	k := 16 + 3 // ring bits for 6 clients
	for _, c := range []struct {
		name  string
		entry int
		delta uint32
		want  string
	}{
		{"coordinate", 2, 1 << (k - 1), "entry 2"},
		{"unclipped", dim, 1<<k - 150000, "unclipped count below 0"},      // honest ≈ 3·32767.5 + 3·65535
		{"weight below its least", dim + 1, 1<<k - 66000, "total weight"}, // honest ≈ 65535 + 5·655.35, least 6·655
		{"weight beyond its most", dim + 1, 3 << (k - 2), "the weight"},
	} {
		_, err := driveTampered(t, p, 4, inputs, dim, nil, func(stage int, id fl.ClientID, reply []byte) []byte {
			if stage == 2 && id == 4 {
				return shiftMaskedEntry(t, reply, c.entry, c.delta)
			}
			return reply
		})
		if !errors.Is(err, fl.ErrRoundAbandoned) || !strings.Contains(err.Error(), "secagg round 4") || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	for _, in := range []fl.SumInput{{Update: []float32{0}, Weight: 0.5}, {Update: []float32{0}, Weight: 1, Unclipped: 2}} {
		if _, err := p.NewClient(1, 1, in); err == nil {
			t.Fatalf("input %+v accepted", in)
		}
	}
}

// TestAttackForcedWeakDegree: a forced degree used to skip the security check and keep the
// claim: n = 1000, k = 20 gives t = 3, a third of the clients have ≥ 3 corrupt neighbours among
// 10% colluding with the server, and the run summary still said 40-bit security against 10%
// collusion. Now such a degree is refused with an error that says by how much, and an explicit
// AllowWeakDegree keeps the run but withdraws the claim, reporting the computed exposure.
func TestAttackForcedWeakDegree(t *testing.T) {
	ids := make([]fl.ClientID, 1000)
	for i := range ids {
		ids[i] = fl.ClientID(i)
	}
	opts := SecAggOptions{Plus: true, MaxDropout: 0.1, MaxCorrupt: 0.1, Degree: 20, Rand: seeded(23)}
	p, err := NewSecAgg(opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.NewServer(1, ids, 10, 1)
	if err == nil {
		t.Fatalf("forced degree 20 for 1000 clients accepted; the run claims: %s", p.Describe())
	}
	if !errors.Is(err, fl.ErrRoundAbandoned) || !strings.Contains(err.Error(), "does not meet") ||
		!strings.Contains(err.Error(), "0.323") || !strings.Contains(err.Error(), "smallest degree that meets them is 58") {
		t.Fatalf("refusal does not say what is wrong: %v", err)
	}
	if _, _, _, err := p.Plan(1000); err == nil {
		t.Fatal("Plan accepted the weak degree")
	}

	opts.AllowWeakDegree = true
	w, _ := NewSecAgg(opts)
	if _, err := w.NewServer(1, ids, 10, 1); err != nil {
		t.Fatalf("allowed weak degree refused: %v", err)
	}
	d := w.Describe()
	if strings.Contains(d, "40-bit") || !strings.Contains(d, "NO statistical-security claim") || !strings.Contains(d, "0.323") {
		t.Fatalf("weak degree described as %q", d)
	}

	// A forced degree that meets the bounds keeps the claim; the planned one is unchanged.
	for _, deg := range []int{58, 0} {
		opts := SecAggOptions{Plus: true, MaxDropout: 0.1, MaxCorrupt: 0.1, Degree: deg, Rand: seeded(23)}
		ok, _ := NewSecAgg(opts)
		srv, err := ok.NewServer(1, ids, 10, 1)
		if err != nil {
			t.Fatalf("degree %d refused: %v", deg, err)
		}
		if cfg := srv.(*secaggServer).cfg; cfg.Degree != 58 || cfg.Threshold != 30 {
			t.Fatalf("degree %d planned k=%d t=%d", deg, cfg.Degree, cfg.Threshold)
		}
		if d := ok.Describe(); !strings.Contains(d, "40-bit statistical security") || strings.Contains(d, "NO statistical") {
			t.Fatalf("degree %d described as %q", deg, d)
		}
	}
	// The Spec carries the override.
	spec := Spec{MaxDropout: 0.1, MaxCorrupt: 0.1, Degree: 20, AllowWeakDegree: true}
	wire, _ := spec.Wire()
	proto, err := FromWire("secaggplus", wire)
	if err != nil || !proto.(*SecAgg).o.AllowWeakDegree {
		t.Fatalf("allow_weak_degree lost on the wire: %v", err)
	}
}

// TestAttackQuantisationUnderstatesDPSensitivity: stochastic rounding can push a quantised
// contribution well beyond the clip S (the rounding error of every entry adds up in norm),
// while DP-FedAvg noised the sum as if S were the sensitivity. Now conditional rounding keeps
// every dequantised contribution within SecAgg.Sensitivity(S, dim), and DP-FedAvg calibrates
// its noise to z times that bound: over many updates clipped to S, including the worst case of
// almost every entry at a rounding midpoint, no contribution exceeds the bound and the noise
// standard deviation is z·bound.
func TestAttackQuantisationUnderstatesDPSensitivity(t *testing.T) {
	const S, z = 0.5, 1.1
	for _, c := range []struct {
		bits   int
		clip   float64
		dim    int
		trials int
	}{{16, 0.5, 199_210, 3}, {8, 0.5, 20_000, 20}, {5, 0.5, 5_000, 60}} {
		p, err := NewSecAgg(SecAggOptions{Bits: c.bits, ClipRange: c.clip, Rand: seeded(24)})
		if err != nil {
			t.Fatal(err)
		}
		bound := p.Sensitivity(S, c.dim)
		// Unit weights: the engine's maxWeight is 1 under DP.
		cfg, err := p.config(1, 10, c.dim, 1)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(c.bits), 9))
		worst, over := 0.0, 0
		for trial := range 3 * c.trials {
			u := make([]float32, c.dim)
			switch trial % 3 {
			case 0: // a random update, clipped to S
				for j := range u {
					u[j] = float32(rng.NormFloat64())
				}
				if _, err := privacy.ClipL2(u, S); err != nil {
					t.Fatal(err)
				}
			case 1: // all of S in a few entries; the zeros are rounding midpoints (2^b − 1 levels is odd)
				u[rng.IntN(c.dim)] = float32(S * 0.6)
				u[rng.IntN(c.dim)] = float32(-S * 0.79)
			case 2: // sparse random entries, the rest midpoints, clipped to S
				for range 20 {
					u[rng.IntN(c.dim)] = float32(rng.NormFloat64())
				}
				if _, err := privacy.ClipL2(u, S); err != nil {
					t.Fatal(err)
				}
			}
			cl := &secaggClient{s: p, in: fl.SumInput{Update: u, Weight: 1, Unclipped: 1}}
			vec := cl.vector(cfg.MaxWeight) // exactly what the client half quantises
			enc, err := secagg.EncodeInput(&cfg, vec, 1, rand.NewChaCha8([32]byte{byte(trial), byte(c.bits)}))
			if err != nil {
				t.Fatal(err)
			}
			x := secagg.Dequantise(&cfg, enc)[:c.dim] // its contribution to SumResult.Sum (× maxWeight = 1)
			var n2 float64
			for _, v := range x {
				n2 += v * v
			}
			norm := math.Sqrt(n2)
			worst = max(worst, norm)
			if norm > S {
				over++
			}
			if norm > bound {
				t.Fatalf("bits %d: a contribution clipped to S = %v has norm %v after quantisation, above the sensitivity %v", c.bits, S, norm, bound)
			}
		}
		t.Logf("bits %d, dim %d: sensitivity %.6g, largest contribution %.6g, %d of %d above S", c.bits, c.dim, bound, worst, over, 3*c.trials)
		if over == 0 {
			t.Fatalf("bits %d: no quantised contribution exceeded S: the test exercises nothing", c.bits)
		}

		// DP-FedAvg noises the sum with z·Sensitivity(S).
		acct, _ := privacy.NewAccountant("rdp")
		d, err := fl.NewDPFedAvg(fl.DPConfig{Placement: fl.PlacementCentral, NoiseMultiplier: z, Clip: S, SamplingRate: 0.01,
			Clients: 2000, Delta: 1e-5, Accountant: acct, Source: privacy.NewSeededSource(uint64(c.bits)),
			Sensitivity: func(clip float64) float64 { return p.Sensitivity(clip, c.dim) }})
		if err != nil {
			t.Fatal(err)
		}
		if std, err := d.NoiseStd(); err != nil || std != z*bound {
			t.Fatalf("bits %d: noise std %v (%v), want z·bound = %v", c.bits, std, err, z*bound)
		}
		const m = 200_000
		mean, err := d.Finalize(1, make([]float64, m), 20, 10)
		if err != nil {
			t.Fatal(err)
		}
		var sq float64
		for _, v := range mean {
			sq += float64(v) * float64(v)
		}
		sd := math.Sqrt(sq/m) * 20 // the mean divides the noised sum by q·N = 20
		if math.Abs(sd-z*bound) > 0.01*z*bound {
			t.Fatalf("bits %d: noise sd on the sum %v, want z·bound = %v (z·S = %v)", c.bits, sd, z*bound, z*S)
		}
	}
}

// Under unit weights (DP) the round's maxWeight is 1: the adapter does not scale updates by
// example counts, each client's contribution to the sum is exactly its own dequantised update
// (the same draw its client half makes), and the weight is the client count.
func TestSecAggUnitWeightsNotScaled(t *testing.T) {
	const n, dim, round = 5, 300, 3
	rng := rand.New(rand.NewPCG(7, 7))
	inputs := map[fl.ClientID]fl.SumInput{}
	want := make([]float64, dim)
	for i := range n {
		u := make([]float32, dim)
		for j := range u {
			u[j] = float32(rng.NormFloat64())
		}
		if _, err := privacy.ClipL2(u, 0.5); err != nil {
			t.Fatal(err)
		}
		inputs[fl.ClientID(10+i)] = fl.SumInput{Update: u, Weight: 1, Unclipped: 1}
		for j, v := range u {
			want[j] += float64(v)
		}
	}
	p, _ := NewSecAgg(SecAggOptions{MaxDropout: 0.2, Rand: seeded(25)})
	res, err := drive(t, p, round, inputs, dim, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Weight != n || res.Count != n || res.Unclipped != n {
		t.Fatalf("weight %v count %d unclipped %v, want %d each", res.Weight, res.Count, res.Unclipped, n)
	}
	cfg := secagg.Config{Round: round, Clients: n, Dim: dim + 1, NormDim: dim, Bits: 16, ClipRange: 0.5, MaxWeight: 1,
		Graph: secagg.GraphComplete, Degree: n - 1, Threshold: 2}
	exact := make([]float64, dim)
	for id, in := range inputs {
		vec := (&secaggClient{s: p, in: in}).vector(1)
		for j, v := range in.Update {
			if vec[j] != v {
				t.Fatalf("client %d entry %d scaled to %v from %v under unit weights", id, j, vec[j], v)
			}
		}
		enc, err := secagg.EncodeInput(&cfg, vec, in.Weight, p.rand(round, id))
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range secagg.Dequantise(&cfg, enc)[:dim] {
			exact[j] += v
		}
	}
	step := 1.0 / 65535
	for j := range dim {
		if math.Abs(res.Sum[j]-exact[j]) > 1e-9 {
			t.Fatalf("entry %d: sum %v, Σ of the clients' dequantised updates %v", j, res.Sum[j], exact[j])
		}
		if math.Abs(res.Sum[j]-want[j]) > n*step {
			t.Fatalf("entry %d: sum %v, want %v within %d steps of 1/65535 (no scaling by example counts)", j, res.Sum[j], want[j], n)
		}
	}
}

// TestAttackSetupFromAnotherRun: the run id travels in the setup message and is bound into
// every signature and key of the round (see secagg's TestAttackReplayAcrossRuns for signed
// transcripts replayed across runs). A client that joined run B (its Spec carries B's id)
// refuses the setup of run A, which has the same round number; a server draws a fresh id per
// run unless given one; a Spec carries the id to clients.
func TestAttackSetupFromAnotherRun(t *testing.T) {
	const dim = 4
	ids := []fl.ClientID{1, 2, 3}
	a, _ := NewSecAgg(SecAggOptions{})
	b, _ := NewSecAgg(SecAggOptions{})
	runA, err := a.RunID()
	if err != nil {
		t.Fatal(err)
	}
	runB, _ := b.RunID()
	if runA == runB || runA == ([16]byte{}) {
		t.Fatalf("two runs drew run ids %x and %x", runA, runB)
	}
	if again, _ := a.RunID(); again != runA {
		t.Fatal("the run id changed within a run")
	}
	srvA, err := a.NewServer(1, ids, dim, 1)
	if err != nil {
		t.Fatal(err)
	}
	setupA, _, err := srvA.Next()
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _, err := decodeSetup(setupA[2]); err != nil || cfg.RunID != runA {
		t.Fatalf("setup carries run %x (%v), want %x", cfg.RunID, err, runA)
	}
	in := fl.SumInput{Update: make([]float32, dim), Weight: 1}
	for _, c := range []struct {
		run  [16]byte
		want bool
	}{{runB, false}, {runA, true}, {[16]byte{}, true}} {
		wire, _ := Spec{RunID: c.run[:]}.Wire()
		if c.run == ([16]byte{}) {
			wire, _ = Spec{}.Wire()
		}
		proto, err := FromWire("secagg", wire)
		if err != nil {
			t.Fatal(err)
		}
		cl, _ := proto.NewClient(1, 2, in)
		_, err = cl.Handle(setupA[2])
		if (err == nil) != c.want {
			t.Fatalf("client of run %x given the setup of run %x: err = %v", c.run, runA, err)
		}
		if !c.want && !strings.Contains(err.Error(), "run") {
			t.Fatalf("refusal does not name the run: %v", err)
		}
	}
	if _, err := FromWire("secagg", []byte(`{"run_id":"AAEC"}`)); err == nil {
		t.Fatal("a 3-byte run id accepted")
	}
	// Seeded runs draw a reproducible id from Rand(0, −1).
	s1, _ := NewSecAgg(SecAggOptions{Rand: seeded(26)})
	s2, _ := NewSecAgg(SecAggOptions{Rand: seeded(26)})
	if r1, _ := s1.RunID(); r1 != func() [16]byte { r, _ := s2.RunID(); return r }() {
		t.Fatal("seeded run ids differ")
	}
}

// Attack: the SecAgg threshold and cohort came from the server's setup message, and a client
// masked its update whatever they were (threshold 2 in a cohort of 2: the other client and the
// server together unmask it). A client with floors refuses such a round.
func TestAttackThresholdFromServerSetup(t *testing.T) {
	server, err := NewSecAgg(SecAggOptions{MaxDropout: 0.5, Rand: seeded(8)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(1, []fl.ClientID{1, 2, 3}, 2, 1) // a cohort of 3, threshold 2
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := srv.Next()
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := Spec{}.Wire()
	build := FromWireLocal(Local{MinContributors: 5, MinThreshold: 3})
	proto, err := build("secagg", wire)
	if err != nil {
		t.Fatal(err)
	}
	c, err := proto.NewClient(1, 1, fl.SumInput{Update: []float32{0.1, 0.2}, Weight: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handle(msgs[1]); !errors.Is(err, fl.ErrPolicy) {
		t.Fatalf("a client requiring a cohort of 5 and threshold 3 masked in a round of 3 with threshold 2: %v", err)
	}
	// Without floors (FromWire) the same setup is accepted: what the server says goes.
	plain, _ := FromWire("secagg", wire)
	c, _ = plain.NewClient(1, 1, fl.SumInput{Update: []float32{0.1, 0.2}, Weight: 1})
	if _, err := c.Handle(msgs[1]); err != nil {
		t.Fatalf("default client refused an ordinary setup: %v", err)
	}
}
