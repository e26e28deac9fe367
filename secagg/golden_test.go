package secagg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"testing"

	"shoal/internal/golden"
)

// Golden wire-format vectors, in the style of crypto/tls's handshake tests: every message type
// of the protocol, produced by a real round with fixed randomness, is compared byte for byte
// with testdata/golden/<variant>-<type>.golden. A change of the wire format (or of anything
// that feeds the bytes: key derivation, share encryption, masking, quantisation) shows up as a
// diff of those files instead of passing silently through a round trip. After an intended
// change, rewrite them with
//
//	go test ./secagg -run Golden -update
//
// and review the diff.

var update = flag.Bool("update", false, "rewrite the golden files")

const goldenUpdateCmd = "go test ./secagg -run Golden -update"

// newGoldenStream is the fixed randomness of party id in the vectors of label.
func newGoldenStream(label string, id uint64) *golden.Stream {
	h := sha256.New()
	h.Write([]byte("shoal golden vectors: " + label))
	_ = binary.Write(h, binary.BigEndian, id)
	var seed [32]byte
	copy(seed[:], h.Sum(nil))
	return golden.NewStream(seed)
}

// checkGolden compares got with testdata/golden/<name>.golden (or rewrites the file with
// -update) and returns the golden bytes, for the caller to decode.
func checkGolden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	return golden.Files{Update: *update, UpdateCmd: goldenUpdateCmd}.Check(t, name, got)
}

// goldenInputs gives client id a fixed update in [-1.25, 1.25] (some entries get clipped) and
// weight 1+id.
func goldenInputs(dim int) func(ClientID) ([]float32, float64, error) {
	return func(id ClientID) ([]float32, float64, error) {
		u := make([]float32, dim)
		for i := range u {
			u[i] = float32((int(id)*7+i*3)%11-5) / 4
		}
		return u, float64(1 + id), nil
	}
}

type goldenVariant struct {
	name  string
	cfg   Config
	drop  map[ClientID]Stage
	keys  []ed25519.PrivateKey
	types []MsgType // the message types to pin (those sent by or to client 0)
}

func goldenVariants() []goldenVariant {
	allButConsistency := []MsgType{MsgAdvertiseKeys, MsgKeyList, MsgShareKeys, MsgShares, MsgMaskedInput,
		MsgUnmaskRequest, MsgUnmaskShares}
	// Bits 5 with 4 clients gives a 7-bit ring: 6 entries pack into 42 bits, so the masked input
	// has padding bits. Client 3 drops after sharing its keys, so client 0's unmasking shares
	// hold both kinds (self-mask seeds of 1 and 2, the masking key of 3).
	// The run id is bound into signatures, keys and commitments: the vectors pin that too.
	base := Config{Round: 7, Clients: 4, Dim: 5, Bits: 5, ClipRange: 1, MaxWeight: 4,
		Graph: GraphComplete, Degree: 3, Threshold: 2, RunID: [16]byte([]byte("golden run id 16"))}
	drop := map[ClientID]Stage{3: StageMasked}

	mal := base
	mal.VerifyKeys = make([]ed25519.PublicKey, mal.Clients)
	keys := make([]ed25519.PrivateKey, mal.Clients)
	for i := range keys {
		seed := sha256.Sum256(fmt.Appendf(nil, "shoal golden vectors: signing key %d", i))
		keys[i] = ed25519.NewKeyFromSeed(seed[:])
		mal.VerifyKeys[i] = keys[i].Public().(ed25519.PublicKey)
	}

	// On a Harary graph the server encodes a key list per client (not one broadcast).
	harary := Config{Round: 9, Clients: 5, Dim: 3, Bits: 4, ClipRange: 1, MaxWeight: 4,
		Graph: GraphHarary, Degree: 2, Threshold: 2, GraphSeed: sha256.Sum256([]byte("shoal golden vectors: graph"))}

	return []goldenVariant{
		{name: "semihonest", cfg: base, drop: drop, types: allButConsistency},
		{name: "malicious", cfg: mal, drop: drop, keys: keys, types: []MsgType{MsgAdvertiseKeys, MsgKeyList,
			MsgShareKeys, MsgShares, MsgMaskedInput, MsgConsistencyRequest, MsgConsistencySig, MsgUnmaskRequest, MsgUnmaskShares}},
		{name: "harary", cfg: harary, types: []MsgType{MsgKeyList}},
	}
}

// goldenMessages runs the variant's round and returns, per type, the first message sent by or
// delivered to client 0.
func goldenMessages(t *testing.T, v goldenVariant) map[MsgType][]byte {
	t.Helper()
	got := map[MsgType][]byte{}
	tap := func(from, to uint32, data []byte) {
		if from != 0 && to != 0 {
			return
		}
		h, err := Peek(data)
		if err != nil {
			t.Errorf("tapped message: %v", err)
			return
		}
		if _, ok := got[h.Type]; !ok {
			got[h.Type] = bytes.Clone(data)
		}
	}
	rep, err := RunRound(RoundSpec{Config: v.cfg, Input: goldenInputs(v.cfg.Dim), Drop: v.drop, SigningKeys: v.keys, Tap: tap,
		Rand: func(id ClientID) io.Reader { return newGoldenStream(v.name, uint64(id)) }})
	if err != nil {
		t.Fatalf("round: %v", err)
	}
	if rep.Result == nil || len(rep.ClientErrors) != 0 {
		t.Fatalf("round did not complete cleanly: result %v, client errors %v", rep.Result, rep.ClientErrors)
	}
	return got
}

func TestGoldenMessages(t *testing.T) {
	for _, v := range goldenVariants() {
		t.Run(v.name, func(t *testing.T) {
			msgs := goldenMessages(t, v)
			// The round must be reproducible, or the vectors would pin nothing.
			again := goldenMessages(t, v)
			for _, typ := range v.types {
				t.Run(typ.String(), func(t *testing.T) {
					got := msgs[typ]
					if got == nil {
						t.Fatalf("the round produced no %v to or from client 0", typ)
					}
					if !bytes.Equal(got, again[typ]) {
						t.Fatalf("%v differs between two runs with the same randomness: %s", typ, golden.Diff(again[typ], got))
					}
					want := checkGolden(t, v.name+"-"+typ.String(), got)
					h, err := Peek(want)
					if err != nil {
						t.Fatalf("golden header: %v", err)
					}
					if h.Type != typ || h.Round != v.cfg.Round {
						t.Fatalf("golden header is %v of round %d, want %v of round %d", h.Type, h.Round, typ, v.cfg.Round)
					}
					m, err := decode(want)
					if err != nil {
						t.Fatalf("golden %v does not decode: %v", typ, err)
					}
					if re := m.encode(); !bytes.Equal(re, want) {
						t.Fatalf("golden %v decodes but re-encodes differently: %s", typ, golden.Diff(re, want))
					}
				})
			}
		})
	}
}
