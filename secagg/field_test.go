package secagg

import (
	"crypto/ecdh"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"github.com/cloudflare/circl/dh/x25519"
)

func testStream(t testing.TB, seed byte) *byteStream {
	s, err := newByteStream(mrand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFieldMulMatchesBigInt(t *testing.T) {
	p := new(big.Int).SetUint64(fieldP)
	r := mrand.New(mrand.NewPCG(3, 4))
	cases := [][2]uint64{{0, 0}, {1, fieldP - 1}, {fieldP - 1, fieldP - 1}, {1 << 60, 1 << 60}}
	for range 10000 {
		cases = append(cases, [2]uint64{r.Uint64N(fieldP), r.Uint64N(fieldP)})
	}
	for _, c := range cases {
		want := new(big.Int).Mul(new(big.Int).SetUint64(c[0]), new(big.Int).SetUint64(c[1]))
		want.Mod(want, p)
		if got := fieldMul(c[0], c[1]); got != want.Uint64() {
			t.Fatalf("%d·%d = %d, want %d", c[0], c[1], got, want)
		}
		if c[0] != 0 && fieldMul(c[0], fieldInv(c[0])) != 1 {
			t.Fatalf("inverse of %d wrong", c[0])
		}
	}
}

func TestSecretChunksRoundTrip(t *testing.T) {
	var s, back [secretSize]byte
	for i := range s {
		s[i] = byte(255 - i)
	}
	var c [chunksPerSecret]uint64
	secretToChunks(&s, c[:])
	for _, v := range c {
		if v >= fieldP {
			t.Fatal("chunk not a field element")
		}
	}
	if err := chunksToSecret(c[:], &back); err != nil || back != s {
		t.Fatalf("round trip failed: %v", err)
	}
	c[chunksPerSecret-1] |= 1 << 40 // beyond the secret's last bytes
	if err := chunksToSecret(c[:], &back); err == nil {
		t.Fatal("out-of-range chunk accepted")
	}
}

// Any t shares reconstruct; t-1 shares do not; the barycentric shortcut agrees with Lagrange.
func TestShamirThreshold(t *testing.T) {
	rs := testStream(t, 1)
	for _, th := range []int{1, 2, 5, 40} {
		secrets := []uint64{11, 22, fieldP - 1}
		d, err := newShamirDealer(secrets, th, rs)
		if err != nil {
			t.Fatal(err)
		}
		n := th + 3
		xs := make([]uint64, n)
		shares := make([][]uint64, n)
		for i := range xs {
			xs[i] = uint64(3*i + 1)
			shares[i] = make([]uint64, len(secrets))
			d.shareAt(xs[i], shares[i])
		}
		recon := func(idx []int) []uint64 {
			sx := make([]uint64, len(idx))
			for i, j := range idx {
				sx[i] = xs[j]
			}
			lam := make([]uint64, len(idx))
			if err := lagrangeAtZero(sx, lam); err != nil {
				t.Fatal(err)
			}
			out := make([]uint64, len(secrets))
			for s := range out {
				for i, j := range idx {
					out[s] = fieldAdd(out[s], fieldMul(lam[i], shares[j][s]))
				}
			}
			return out
		}
		perm := mrand.New(mrand.NewPCG(uint64(th), 1)).Perm(n)
		got := recon(perm[:th])
		for s := range secrets {
			if got[s] != secrets[s] {
				t.Fatalf("t=%d: %d shares gave %v, want %v", th, th, got, secrets)
			}
		}
		if th > 1 {
			got = recon(perm[:th-1])
			if got[0] == secrets[0] && got[1] == secrets[1] {
				t.Fatalf("t=%d: %d shares reconstructed the secret", th, th-1)
			}
		}
		// Barycentric: T = first t+1 x's; removing any one leaves t shares.
		b, err := newBarycentric(xs[:th+1])
		if err != nil {
			t.Fatal(err)
		}
		lam := make([]uint64, th+1)
		for skip := range th + 1 {
			b.lagrangeWithout(skip, lam)
			var v uint64
			for i := range th + 1 {
				v = fieldAdd(v, fieldMul(lam[i], shares[i][0]))
			}
			if v != secrets[0] || lam[skip] != 0 {
				t.Fatalf("t=%d skip %d: barycentric reconstruction %d, want %d", th, skip, v, secrets[0])
			}
		}
	}
	if err := lagrangeAtZero([]uint64{1, 1}, make([]uint64, 2)); err == nil {
		t.Fatal("duplicate x accepted")
	}
	if err := lagrangeAtZero([]uint64{0, 1}, make([]uint64, 2)); err == nil {
		t.Fatal("x = 0 accepted")
	}
}

// circl's X25519 must agree with crypto/ecdh, and low-order keys must be refused.
func TestX25519MatchesStdlib(t *testing.T) {
	rs := testStream(t, 2)
	for range 20 {
		a, b := newKeyPair(rs), newKeyPair(rs)
		sa, err := ecdh.X25519().NewPrivateKey(a.secret[:])
		if err != nil {
			t.Fatal(err)
		}
		if pub := sa.PublicKey().Bytes(); string(pub) != string(a.public[:]) {
			t.Fatal("public key differs from crypto/ecdh")
		}
		pb, _ := ecdh.X25519().NewPublicKey(b.public[:])
		want, err := sa.ECDH(pb)
		if err != nil {
			t.Fatal(err)
		}
		var got x25519.Key
		if !x25519.Shared(&got, &a.secret, &b.public) || string(got[:]) != string(want) {
			t.Fatal("shared secret differs from crypto/ecdh")
		}
		k1, err1 := agree(&a.secret, &b.public, purposeMask, session{round: 5}, 1, 2)
		k2, err2 := agree(&b.secret, &a.public, purposeMask, session{round: 5}, 2, 1)
		k3, _ := agree(&b.secret, &a.public, purposeMask, session{round: 6}, 2, 1)
		k4, _ := agree(&b.secret, &a.public, purposeChannel, session{round: 5}, 2, 1)
		k5, _ := agree(&b.secret, &a.public, purposeMask, session{run: [16]byte{1}, round: 5}, 2, 1)
		if err1 != nil || err2 != nil || k1 != k2 {
			t.Fatal("pairwise keys differ")
		}
		if k1 == k3 || k1 == k4 || k1 == k5 {
			t.Fatal("keys not separated by run, round or purpose")
		}
	}
	var zero x25519.Key // a low-order point
	a := newKeyPair(rs)
	if _, err := agree(&a.secret, &zero, purposeMask, session{round: 1}, 0, 1); err == nil {
		t.Fatal("low-order public key accepted")
	}
}

// An encrypted share opens only with its run, round, sender and receiver.
func TestShareAEADBinding(t *testing.T) {
	key := [16]byte{4}
	b := []uint64{1, 2, 3, 4, 5}
	s := []uint64{6, 7, 8, 9, 10}
	ses := session{run: [16]byte{9}, round: 7}
	ct, err := sealShare(&key, ses, 1, 2, b, s, nil)
	if err != nil || len(ct) != shareCipherSize {
		t.Fatalf("seal: %v, %d bytes", err, len(ct))
	}
	gb, gs := make([]uint64, 5), make([]uint64, 5)
	if err := openShare(&key, ses, 1, 2, ct, gb, gs); err != nil || gb[4] != 5 || gs[0] != 6 {
		t.Fatalf("open: %v %v %v", err, gb, gs)
	}
	for _, c := range []struct {
		ses      session
		from, to uint32
	}{{session{run: ses.run, round: 8}, 1, 2}, {session{run: [16]byte{8}, round: 7}, 1, 2}, {ses, 2, 1}, {ses, 1, 3}} {
		if err := openShare(&key, c.ses, c.from, c.to, ct, gb, gs); err == nil {
			t.Fatalf("share opened with run %x round %d sender %d receiver %d", c.ses.run, c.ses.round, c.from, c.to)
		}
	}
	ct[3] ^= 1
	if err := openShare(&key, ses, 1, 2, ct, gb, gs); err == nil {
		t.Fatal("tampered share opened")
	}
}

// shareAt's lazy reduction must agree with plain modular Horner up to the largest x.
func TestShareAtMatchesReference(t *testing.T) {
	rs := testStream(t, 8)
	secrets := []uint64{fieldP - 1, fieldP - 2, 0, 1}
	d, err := newShamirDealer(secrets, 300, rs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.coeffs[len(secrets) : 2*len(secrets)] { // worst-case coefficients too
		d.coeffs[len(secrets)+i] = fieldP - 1
	}
	out := make([]uint64, len(secrets))
	for _, x := range []uint64{1, 2, 3, 1000, MaxClients - 1, MaxClients} {
		d.shareAt(x, out)
		for s := range secrets {
			var want uint64
			for j := d.t - 1; j >= 0; j-- {
				want = fieldAdd(fieldMul(want, x), d.coeffs[j*len(secrets)+s])
			}
			if out[s] != want {
				t.Fatalf("x=%d poly %d: %d, want %d", x, s, out[s], want)
			}
		}
	}
}
