package he

import (
	crand "crypto/rand"
	"encoding/binary"
	"runtime"
	"shoal/internal/cputime"
	"sync"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// cpuTime is the process's CPU time (processCPU): on a shared machine it measures the
// work done rather than the wait for a core.
func cpuTime() time.Duration { return cputime.Process() }

// measureCPU wraps a benchmark body and reports cpu-ns/op next to ns/op.
func measureCPU(body func(b *testing.B)) func(b *testing.B) {
	return func(b *testing.B) {
		start := cpuTime()
		body(b)
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

// dim2NN is the parameter count of the 2NN MNIST model (784-200-200-10).
const dim2NN = 199210

type benchFixture struct {
	p       *Params
	sim     *Simulation
	setup   *PublicSetup
	keys    map[PartyID]*KeyMaterial
	update  []float32
	uploads [][]byte // 8 distinct encrypted uploads of the 2NN update, signed by parties 1…8
}

var (
	benchOnce sync.Once
	benchFix  *benchFixture
)

func bench2NN(b *testing.B) *benchFixture {
	benchOnce.Do(func() {
		p := DefaultParams()
		committee := committeeIDs(5)
		sim := testSimulation(b)
		setup, keys, err := RunCeremony(sim, p, committee, 3, crand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		f := &benchFixture{p: p, sim: sim, setup: setup, keys: keys, update: make([]float32, dim2NN)}
		rng := newRNG(1)
		for i := range f.update {
			f.update[i] = float32(rng.Float64()*2 - 1)
		}
		for c := 0; c < 8; c++ {
			enc := newTestEncryptor(b, setup, PartyID(c+1))
			up, err := enc.Encrypt(1, PartyID(c+1), f.update, float64(c+1))
			if err != nil {
				b.Fatal(err)
			}
			bs, _ := up.MarshalBinary()
			f.uploads = append(f.uploads, bs)
		}
		benchFix = f
	})
	return benchFix
}

// overhead runs ours and raw alternately in every iteration, so both see the same
// machine load, and reports their CPU time per operation and the relative overhead.
func overhead(b *testing.B, ours, raw func()) { overheadWithSetup(b, nil, ours, raw) }

// overheadWithSetup runs setup (unmeasured) before each iteration.
func overheadWithSetup(b *testing.B, setup, ours, raw func()) {
	var oursCPU, rawCPU time.Duration
	for b.Loop() {
		if setup != nil {
			b.StopTimer()
			setup()
			b.StartTimer()
		}
		t0 := cpuTime()
		ours()
		t1 := cpuTime()
		raw()
		t2 := cpuTime()
		oursCPU += t1 - t0
		rawCPU += t2 - t1
	}
	n := float64(b.N)
	b.ReportMetric(float64(oursCPU.Microseconds())/1e3/n, "he-cpu-ms/op")
	b.ReportMetric(float64(rawCPU.Microseconds())/1e3/n, "raw-cpu-ms/op")
	b.ReportMetric(100*(float64(oursCPU)/float64(rawCPU)-1), "overhead-%")
}

// BenchmarkEncryptOverhead2NN: a client's Encrypt + AppendBinary (into its reused send
// buffer) of the 2NN update (one goroutine) against the raw Lattigo operations on the same 25 ciphertexts: Encryptor.
// Encrypt of a ready plaintext and Poly.MarshalBinary of both halves.
func BenchmarkEncryptOverhead2NN(b *testing.B) {
	f := bench2NN(b)
	p := f.p
	nct := p.CiphertextsFor(dim2NN)
	enc := newTestEncryptor(b, f.setup, 1)
	enc.SetWorkers(1)
	rawEnc := rlwe.NewEncryptor(p.rlwe, f.setup.PublicKey)
	pt := rlwe.NewPlaintext(p.rlwe, p.rlwe.MaxLevel())
	pt.IsNTT = false
	for i := 0; i < p.N(); i++ {
		p.encodeValue(float64(f.update[i]), pt.Value.Coeffs, i)
	}
	var buf []byte
	overhead(b, func() {
		up, err := enc.Encrypt(1, 1, f.update, 3)
		if err != nil {
			b.Fatal(err)
		}
		if buf, err = up.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}, func() {
		for k := 0; k < nct; k++ {
			ct := rlwe.NewCiphertext(p.rlwe, 1, p.rlwe.MaxLevel())
			if err := rawEnc.Encrypt(pt, ct); err != nil {
				b.Fatal(err)
			}
			if _, err := ct.Value[0].MarshalBinary(); err != nil {
				b.Fatal(err)
			}
			if _, err := ct.Value[1].MarshalBinary(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkClientEncrypt2NN is the client's wall-clock time to encrypt and encode the
// 2NN update, on one goroutine and with the default GOMAXPROCS workers.
func BenchmarkClientEncrypt2NN(b *testing.B) {
	f := bench2NN(b)
	for _, workers := range []int{1, 0} {
		name := "serial"
		if workers == 0 {
			name = "parallel"
		}
		b.Run(name, measureCPU(func(b *testing.B) {
			enc := newTestEncryptor(b, f.setup, 1)
			if workers > 0 {
				enc.SetWorkers(workers)
			}
			var buf []byte
			for b.Loop() {
				up, err := enc.Encrypt(1, 1, f.update, 3)
				if err != nil {
					b.Fatal(err)
				}
				if buf, err = up.AppendBinary(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		}))
	}
}

// relabelled copies encoded uploads so their sender field can be rewritten in place.
func relabelled(uploads [][]byte) [][]byte {
	out := make([][]byte, len(uploads))
	for i, u := range uploads {
		out[i] = append([]byte(nil), u...)
	}
	return out
}

// setSender rewrites the sender field of an encoded upload (which breaks its signature: only
// for an aggregator that does not verify).
func setSender(b []byte, id PartyID) { binary.BigEndian.PutUint64(b[6+16+8:], uint64(id)) }

// relabel returns upload bytes with the sender field set to id.
func relabel(dst, src []byte, id PartyID) []byte {
	dst = append(dst[:0], src...)
	binary.BigEndian.PutUint64(dst[6+16+8:], uint64(id))
	return dst
}

// BenchmarkAggregateOverhead2NN: the server's AddEncoded of one 2NN upload (validate,
// decode, add, digest and keep the c1 halves; the signature check is measured by
// BenchmarkServerVerifyUpload2NN) against the raw Lattigo operations on the same bytes: Poly.UnmarshalBinary
// and ring Add of the 2·25 polynomials.
func BenchmarkAggregateOverhead2NN(b *testing.B) {
	f := bench2NN(b)
	p := f.p
	rq := p.rlwe.RingQ()
	nct := p.CiphertextsFor(dim2NN)
	sum := newPolys(p, 2*nct)
	scratch := rq.NewPoly()
	pb := p.polyBytes()
	a, _ := NewAggregator(f.setup, 1, dim2NN, AggregatorConfig{})
	bufs := relabelled(f.uploads)
	id := PartyID(0)
	overhead(b, func() {
		id++
		buf := bufs[int(id)%len(bufs)]
		setSender(buf, id)
		if err := a.AddEncoded(buf); err != nil {
			b.Fatal(err)
		}
	}, func() {
		src := f.uploads[int(id)%len(f.uploads)]
		off := len(src) - 2*nct*pb
		for k := 0; k < 2*nct; k++ {
			if err := scratch.UnmarshalBinary(src[off+k*pb : off+(k+1)*pb]); err != nil {
				b.Fatal(err)
			}
			rq.Add(sum[k], scratch, sum[k])
		}
	})
}

// BenchmarkServerAggregate1000x2NN: the server's whole aggregation of 1,000 encoded 2NN
// uploads (8 distinct encryptions, relabelled with distinct senders).
func BenchmarkServerAggregate1000x2NN(b *testing.B) {
	f := bench2NN(b)
	bufs := relabelled(f.uploads)
	measureCPU(func(b *testing.B) {
		for b.Loop() {
			a, _ := NewAggregator(f.setup, 1, dim2NN, AggregatorConfig{})
			for c := 1; c <= 1000; c++ {
				buf := bufs[c%len(bufs)]
				setSender(buf, PartyID(c))
				if err := a.AddEncoded(buf); err != nil {
					b.Fatal(err)
				}
			}
		}
	})(b)
}

// BenchmarkDecryptOverhead2NN: one threshold decryption of a 2NN aggregate of 3 uploads with
// t = 3 of K = 5 — each active member's Share (checking the request's signatures, digests
// and approvals, re-adding the 3 contributions' c1 halves, Combiner, key switch, smudging),
// the wire round trip of request and shares, Finish with decoding — against the raw Lattigo operations
// for the same protocol: MarshalBinary/UnmarshalBinary of the request and the shares,
// GenAdditiveShare, KeySwitchProtocol.GenShare with Lattigo's own flooding (σ = 2^49,
// its float64 sampler's limit) and ring Add of the shares.
func BenchmarkDecryptOverhead2NN(b *testing.B) {
	benchDecryptOverhead(b, ring.DiscreteGaussian{Sigma: 1 << 49, Bound: 6 * (1 << 49)})
}

// BenchmarkDecryptOverheadEqualNoise2NN is the same comparison with Lattigo asked for the
// same flooding as ours, σ = 2^63 (its sampler then switches to big integers).
func BenchmarkDecryptOverheadEqualNoise2NN(b *testing.B) {
	benchDecryptOverhead(b, ring.DiscreteGaussian{Sigma: 0x1p63, Bound: 6 * 0x1p63})
}

func benchDecryptOverhead(b *testing.B, flooding ring.DiscreteGaussian) {
	f := bench2NN(b)
	p := f.p
	committee := f.setup.Ceremony.Committee
	active := committee[:3]
	up, _ := DecodeUpload(p, f.uploads[0])
	points := []multiparty.ShamirPublicPoint{1, 2, 3, 4, 5}
	ks, err := multiparty.NewKeySwitchProtocol(p.rlwe, flooding)
	if err != nil {
		b.Fatal(err)
	}
	rq := p.rlwe.RingQ()
	zero := rlwe.NewSecretKey(p.rlwe)
	var a *Aggregator
	var decs map[PartyID]*Decryptor
	prepare := func() {
		a = newTestAggregator(b, f.setup, 1, dim2NN)
		for _, buf := range f.uploads[:3] {
			if err := a.AddEncoded(buf); err != nil {
				b.Fatal(err)
			}
		}
		decs = approveAll(b, a, f.keys, committee[:4])
		runtime.GC() // settle the garbage of earlier iterations outside the measurement
	}
	var shareBuf []byte // a member's send buffer, reused
	overheadWithSetup(b, prepare, func() {
		req, err := a.DecryptRequest(active)
		if err != nil {
			b.Fatal(err)
		}
		rb, _ := req.MarshalBinary()
		for _, id := range active {
			s, err := decs[id].ShareEncoded(rb)
			if err != nil {
				b.Fatal(err)
			}
			shareBuf, _ = s.AppendBinary(shareBuf[:0])
			if err := a.AddShareEncoded(shareBuf); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := a.Finish(); err != nil {
			b.Fatal(err)
		}
	}, func() {
		// The request: c1 of every ciphertext, serialised once, decoded by each member.
		var req [][]byte
		for k := range up.Ciphertexts {
			rb, _ := up.Ciphertexts[k][1].MarshalBinary()
			req = append(req, rb)
		}
		acc := newPolys(p, len(up.Ciphertexts))
		for j := range active {
			cmb := multiparty.NewCombiner(p.rlwe, points[j], points, 3)
			sk := rlwe.NewSecretKey(p.rlwe)
			if err := cmb.GenAdditiveShare(points[:3], points[j], f.keys[active[j]].share, sk); err != nil {
				b.Fatal(err)
			}
			ct := rlwe.NewCiphertext(p.rlwe, 1, p.rlwe.MaxLevel())
			ct.IsNTT = false
			for k := range req {
				if err := ct.Value[1].UnmarshalBinary(req[k]); err != nil {
					b.Fatal(err)
				}
				share := ks.AllocateShare(p.rlwe.MaxLevel())
				ks.GenShare(sk, zero, ct, &share)
				sb, _ := share.MarshalBinary()
				var back multiparty.KeySwitchShare
				if err := back.UnmarshalBinary(sb); err != nil {
					b.Fatal(err)
				}
				rq.Add(acc[k], back.Value, acc[k])
			}
		}
	})
}

// BenchmarkVerificationCosts2NN measures what keeps the server honest, per 2NN upload
// (25 ciphertexts): the client's digest of both halves and signature, the server's check of
// an upload (AddEncoded with a trust root against without), and a committee member's check of
// one contribution in a decryption request (signature with its certificate cached, digest of
// the 25 c1 halves, and their addition into the member's own sum).
func BenchmarkVerificationCosts2NN(b *testing.B) {
	f := bench2NN(b)
	p := f.p
	up, err := DecodeUpload(p, f.uploads[0])
	if err != nil {
		b.Fatal(err)
	}
	id := identityOf(b, 1)
	b.Run("client-digest-and-sign", measureCPU(func(b *testing.B) {
		for b.Loop() {
			h0, h1 := halfDigests(up.Ciphertexts)
			if _, err := id.sign(uploadDigest(f.setup.Ceremony.Run, f.setup.Digest(), 1, 1, dim2NN, h0, h1)); err != nil {
				b.Fatal(err)
			}
		}
	}))
	b.Run("server-add-upload", func(b *testing.B) {
		var checked, unchecked *Aggregator
		i := 0
		overheadWithSetup(b, func() {
			if i%len(f.uploads) == 0 {
				checked = newTestAggregator(b, f.setup, 1, dim2NN)
				unchecked, _ = NewAggregator(f.setup, 1, dim2NN, AggregatorConfig{})
			}
		}, func() {
			if err := checked.AddEncoded(f.uploads[i%len(f.uploads)]); err != nil {
				b.Fatal(err)
			}
		}, func() {
			if err := unchecked.AddEncoded(f.uploads[i%len(f.uploads)]); err != nil {
				b.Fatal(err)
			}
			i++
		})
	})
	b.Run("member-check-contribution", measureCPU(func(b *testing.B) {
		d := newTestDecryptor(b, f.keys[f.setup.Ceremony.Committee[0]])
		c := contributionOf(up)
		raw := f.uploads[0][uploadBodyOffset(f.uploads[0]):]
		pb := p.polyBytes()
		sum := newPolys(p, len(up.Ciphertexts))
		digest := uploadDigest(f.setup.Ceremony.Run, d.setup, 1, 1, dim2NN, c.C0Digest, c.C1Digest)
		for b.Loop() {
			if _, err := d.ver.verify(c.Signature, digest); err != nil {
				b.Fatal(err)
			}
			h := newHalfHash(c1Label)
			for k := range up.Ciphertexts {
				c1 := raw[(2*k+1)*pb : (2*k+2)*pb]
				if _, err := addPolyChecked(p, c1, sum[k]); err != nil {
					b.Fatal(err)
				}
				h.Write(c1)
			}
			if sum32(h) != c.C1Digest {
				b.Fatal("digest")
			}
		}
	}))
	b.Run("member-check-certificate", measureCPU(func(b *testing.B) {
		for b.Loop() {
			if _, _, err := testSimulation(b).Trust.Verify(id.Certificate); err != nil {
				b.Fatal(err)
			}
		}
	}))
}
