package he

import (
	"bytes"
	"crypto/fips140"
	"crypto/sha256"
	"flag"
	"math"
	"testing"
	"testing/cryptotest"

	"shoal/internal/golden"
)

// Golden wire-format vectors, in the style of crypto/tls's handshake tests: every message of
// the key ceremony and of an encrypted round, produced by a real run at the smallest parameters
// (N = 2^12, one 40-bit prime), is compared byte for byte with testdata/golden/<name>.golden.
// A change of the wire format shows up as a diff of those files instead of passing silently
// through a round trip. After an intended change, rewrite them with
//
//	go test ./he -run Golden -update
//
// and review the diff.
//
// Determinism: the package takes an io.Reader for the ceremony id and reference string and for
// the sealing nonces, but Lattigo draws the RLWE secrets, the key-generation noise and the
// encryption randomness from crypto/rand, crypto/ecdh ignores the reader it is given (Go 1.26)
// and the smudging sampler seeds itself from crypto/rand. testing/cryptotest.SetGlobalRandom
// makes all of those draws deterministic for the duration of the test, so every byte is pinned.
// The run happens twice and must give the same bytes. A Go or Lattigo upgrade that changes how
// much randomness a primitive draws changes the polynomials (not the layout) and needs -update;
// the old files still decoding and re-encoding identically (only the byte comparison failing)
// helps tell that case apart from a format change.

var update = flag.Bool("update", false, "rewrite the golden files")

const goldenUpdateCmd = "go test ./he -run Golden -update"

// goldenSeed seeds testing/cryptotest.SetGlobalRandom.
const goldenSeed = 0x5407a1

// newGoldenStream is the fixed randomness of label, for the package's own io.Reader parameters.
func newGoldenStream(label string) *golden.Stream {
	return golden.NewStream(sha256.Sum256([]byte("shoal golden vectors: " + label)))
}

// checkGolden compares got with testdata/golden/<name>.golden (or rewrites the file with
// -update) and returns the golden bytes, for the caller to decode.
func checkGolden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	return golden.Files{Update: *update, UpdateCmd: goldenUpdateCmd}.Check(t, name, got)
}

// goldenLiteral is the smallest parameter set NewParams accepts in ring size and moduli: one
// polynomial is 32 784 bytes, so the largest message (the decryption request, the c1 halves of
// three uploads) stays near 100 KB and every vector is stored whole.
var goldenLiteral = ParamsLiteral{LogN: 12, LogQ: []int{40}, LogScale: 20, LogSmudging: 12}

type goldenMsg struct {
	name   string
	b      []byte
	decode func([]byte) (marshaler, error)
}

func mustMarshal(t *testing.T, m marshaler) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenRun runs a ceremony (committee 1, 2, 3, threshold 2) and one round (clients 11, 12,
// 13, dimension 4) with all randomness fixed (identities from an in-memory CA included), and
// returns one encoding of every message kind.
func goldenRun(t *testing.T) []goldenMsg {
	t.Helper()
	if fips140.Version() == "v1.0.0" {
		t.Skip("testing/cryptotest.SetGlobalRandom is not supported with the Go Cryptographic Module v1.0.0")
	}
	cryptotest.SetGlobalRandom(t, goldenSeed)
	random := newGoldenStream("he")
	p, err := NewParams(goldenLiteral)
	if err != nil {
		t.Fatal(err)
	}
	withP := func(dec func(*Params, []byte) (marshaler, error)) func([]byte) (marshaler, error) {
		return func(b []byte) (marshaler, error) { return dec(p, b) }
	}
	var out []goldenMsg
	add := func(name string, b []byte, decode func([]byte) (marshaler, error)) {
		out = append(out, goldenMsg{name: name, b: b, decode: decode})
	}
	add("params", mustMarshal(t, p), func(b []byte) (marshaler, error) { return DecodeParams(b) })
	add("params-default", mustMarshal(t, DefaultParams()), func(b []byte) (marshaler, error) { return DecodeParams(b) })

	// Identities from an in-memory CA: deterministic under SetGlobalRandom (its validity
	// period is fixed).
	sim, err := NewSimulation()
	if err != nil {
		t.Fatal(err)
	}
	ident := func(id PartyID) Identity {
		v, err := sim.Identity(id)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// Key ceremony, every message through its encoding as an engine would.
	committee := []PartyID{1, 2, 3}
	cer, err := NewCeremony(p, committee, 2, random)
	if err != nil {
		t.Fatal(err)
	}
	add("ceremony", mustMarshal(t, cer), func(b []byte) (marshaler, error) { return DecodeCeremony(b) })
	server, err := NewCeremonyServer(cer)
	if err != nil {
		t.Fatal(err)
	}
	members := map[PartyID]*CeremonyMember{}
	for _, id := range committee {
		m, kc, err := JoinCeremony(cer, id, ident(id), sim.Trust, random)
		if err != nil {
			t.Fatal(err)
		}
		members[id] = m
		b := mustMarshal(t, kc)
		if id == 1 {
			add("key-commitment", b, func(b []byte) (marshaler, error) { return DecodeKeyCommitment(b) })
		}
		if kc, err = DecodeKeyCommitment(b); err != nil {
			t.Fatal(err)
		}
		if err := server.HandleCommitment(kc); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := server.Directory()
	if err != nil {
		t.Fatal(err)
	}
	dirBytes := mustMarshal(t, dir)
	add("directory", dirBytes, func(b []byte) (marshaler, error) { return DecodeDirectory(b) })
	for _, id := range committee {
		d, err := DecodeDirectory(dirBytes)
		if err != nil {
			t.Fatal(err)
		}
		reveal, sealed, err := members[id].HandleDirectory(d)
		if err != nil {
			t.Fatal(err)
		}
		b := mustMarshal(t, reveal)
		if id == 1 {
			add("keygen-share", b, withP(func(p *Params, b []byte) (marshaler, error) { return DecodeKeyGenShare(p, b) }))
		}
		if reveal, err = DecodeKeyGenShare(p, b); err != nil {
			t.Fatal(err)
		}
		if err := server.HandleKeyGenShare(reveal); err != nil {
			t.Fatal(err)
		}
		for _, s := range sealed {
			b := mustMarshal(t, s)
			if s.From == 1 && s.To == 2 {
				add("sealed-share", b, withP(func(p *Params, b []byte) (marshaler, error) { return DecodeSealedShare(p, b) }))
			}
			if s, err = DecodeSealedShare(p, b); err != nil {
				t.Fatal(err)
			}
			if err := server.HandleSealedShare(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	reveals, err := server.KeyGenShares()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[PartyID]*KeyMaterial{}
	for _, id := range committee {
		boxes, err := server.SharesFor(id)
		if err != nil {
			t.Fatal(err)
		}
		var e *Endorsement
		if keys[id], e, err = members[id].HandleSealedShares(reveals, boxes); err != nil {
			t.Fatal(err)
		}
		b := mustMarshal(t, e)
		if id == 1 {
			add("endorsement", b, func(b []byte) (marshaler, error) { return DecodeEndorsement(b) })
		}
		if e, err = DecodeEndorsement(b); err != nil {
			t.Fatal(err)
		}
		if err := server.HandleEndorsement(e); err != nil {
			t.Fatal(err)
		}
	}
	add("key-material", mustMarshal(t, keys[1]), func(b []byte) (marshaler, error) { return DecodeKeyMaterial(b) })
	setup, err := server.Setup()
	if err != nil {
		t.Fatal(err)
	}
	add("public-setup", mustMarshal(t, setup), func(b []byte) (marshaler, error) { return DecodePublicSetup(b) })

	// One round: three signed uploads, approved by the whole committee, decrypted by
	// members 1 and 2.
	const round, dim = 5, 4
	agg, err := NewAggregator(setup, round, dim, AggregatorConfig{Trust: sim.Trust})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, dim)
	totalWeight := 0.0
	for id := PartyID(11); id <= 13; id++ {
		enc, err := NewEncryptor(setup, ident(id), sim.Trust)
		if err != nil {
			t.Fatal(err)
		}
		enc.SetWorkers(1)
		x := make([]float32, dim)
		w := float64(id - 10)
		for i := range x {
			x[i] = float32((int(id)*3+i*5)%7)/4 - 0.75
			want[i] += w * float64(x[i])
		}
		totalWeight += w
		up, err := enc.Encrypt(round, id, x, w)
		if err != nil {
			t.Fatal(err)
		}
		b := mustMarshal(t, up)
		if id == 11 {
			add("upload", b, withP(func(p *Params, b []byte) (marshaler, error) { return DecodeUpload(p, b) }))
		}
		if err := agg.AddEncoded(b); err != nil {
			t.Fatal(err)
		}
	}
	appReq, err := agg.ApprovalRequest()
	if err != nil {
		t.Fatal(err)
	}
	appBytes := mustMarshal(t, appReq)
	add("approval-request", appBytes, func(b []byte) (marshaler, error) { return DecodeApprovalRequest(b) })
	decs := map[PartyID]*Decryptor{}
	for _, id := range committee {
		if decs[id], err = NewDecryptor(keys[id], DecryptorConfig{Identity: ident(id), Trust: sim.Trust}); err != nil {
			t.Fatal(err)
		}
		ap, err := decs[id].ApproveEncoded(appBytes)
		if err != nil {
			t.Fatal(err)
		}
		b := mustMarshal(t, ap)
		if id == 1 {
			add("approval", b, func(b []byte) (marshaler, error) { return DecodeApproval(b) })
		}
		if err := agg.AddApprovalEncoded(b); err != nil {
			t.Fatal(err)
		}
	}
	req, err := agg.DecryptRequest(committee)
	if err != nil {
		t.Fatal(err)
	}
	reqBytes := mustMarshal(t, req)
	add("decrypt-request", reqBytes, withP(func(p *Params, b []byte) (marshaler, error) { return DecodeDecryptRequest(p, b) }))
	for _, id := range req.Active {
		share, err := decs[id].ShareEncoded(reqBytes)
		if err != nil {
			t.Fatal(err)
		}
		b := mustMarshal(t, share)
		if id == 1 {
			add("decrypt-share", b, withP(func(p *Params, b []byte) (marshaler, error) { return DecodeDecryptShare(p, b) }))
		}
		if err := agg.AddShareEncoded(b); err != nil {
			t.Fatal(err)
		}
	}
	res, err := agg.Finish()
	if err != nil {
		t.Fatal(err)
	}
	// The run is real: the aggregate decrypts to the weighted sum.
	tol := p.MaxAbsError(cer.Threshold)
	for i := range want {
		if math.Abs(res.Sum[i]-want[i]) > tol {
			t.Fatalf("decrypted sum[%d] = %v, want %v ± %v", i, res.Sum[i], want[i], tol)
		}
	}
	if math.Abs(res.TotalWeight-totalWeight) > tol {
		t.Fatalf("decrypted total weight %v, want %v ± %v", res.TotalWeight, totalWeight, tol)
	}
	return out
}

func TestGoldenMessages(t *testing.T) {
	msgs := goldenRun(t)
	again := goldenRun(t) // SetGlobalRandom restarts the stream: the same run, the same bytes
	if len(msgs) != len(again) {
		t.Fatalf("two runs produced %d and %d messages", len(msgs), len(again))
	}
	for i, m := range msgs {
		t.Run(m.name, func(t *testing.T) {
			if !bytes.Equal(m.b, again[i].b) {
				t.Fatalf("%s differs between two runs with the same randomness: %s", m.name, golden.Diff(again[i].b, m.b))
			}
			want := checkGolden(t, m.name, m.b)
			if len(want) < 6 || string(want[:4]) != wireMagic || want[4] != wireVersion {
				t.Fatalf("golden %s does not start with %q version %d", m.name, wireMagic, wireVersion)
			}
			dec, err := m.decode(want)
			if err != nil {
				t.Fatalf("golden %s does not decode: %v", m.name, err)
			}
			re, err := dec.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(re, want) {
				t.Fatalf("golden %s decodes but re-encodes differently: %s", m.name, golden.Diff(re, want))
			}
		})
	}
}
