package secagg

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// sampleMessages runs a small round of each variant and returns every message exchanged.
func sampleMessages(t testing.TB) [][]byte {
	var out [][]byte
	tap := func(from, to uint32, data []byte) { out = append(out, bytes.Clone(data)) }
	cfg := Config{Round: 2, Clients: 5, Dim: 13, Bits: 5, ClipRange: 1, MaxWeight: 4,
		Graph: GraphComplete, Degree: 4, Threshold: 3}
	drop := map[ClientID]Stage{1: StageMasked}
	if _, err := RunRound(RoundSpec{Config: cfg, Input: inputs(cfg.Dim), Rand: seeded(1), Tap: tap, Drop: drop}); err != nil {
		t.Fatal(err)
	}
	sks := make([]ed25519.PrivateKey, 5)
	cfg.VerifyKeys = make([]ed25519.PublicKey, 5)
	for i := range sks {
		sks[i] = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i)}, 32))
		cfg.VerifyKeys[i] = sks[i].Public().(ed25519.PublicKey)
	}
	if _, err := RunRound(RoundSpec{Config: cfg, Input: inputs(cfg.Dim), Rand: seeded(1), Tap: tap, Drop: drop, SigningKeys: sks}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMessagesRoundTrip(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, data := range sampleMessages(t) {
		m, err := decode(data)
		if err != nil {
			t.Fatalf("decoding a message the protocol produced: %v", err)
		}
		seen[m.Type] = true
		if again := m.encode(); !bytes.Equal(again, data) {
			t.Fatalf("%v does not re-encode to the same bytes", m.Type)
		}
		// Every strict prefix and every extension must be rejected.
		for _, cut := range []int{0, 1, headerSize - 1, headerSize, len(data) - 1} {
			if cut >= 0 && cut < len(data) {
				if _, err := decode(data[:cut]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("%v truncated to %d bytes: err = %v", m.Type, cut, err)
				}
			}
		}
		if _, err := decode(append(bytes.Clone(data), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%v with a trailing byte: err = %v", m.Type, err)
		}
		bad := bytes.Clone(data)
		for _, v := range []byte{wireVersion - 1, wireVersion + 1} {
			bad[0] = v
			if _, err := decode(bad); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v with version %d accepted", m.Type, v)
			}
		}
	}
	for typ := MsgAdvertiseKeys; typ <= MsgUnmaskShares; typ++ {
		if !seen[typ] {
			t.Errorf("no %v message in the sample", typ)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	hdr := func(typ MsgType, from, to uint32) []byte {
		return appendHeader(nil, Header{Type: typ, Round: 1, Sender: from, Recipient: to})
	}
	u32 := func(b []byte, vs ...uint32) []byte { return putUint32s(b, vs) }
	cases := map[string][]byte{
		"unknown type":         hdr(42, 0, ServerID),
		"client to client":     append(hdr(MsgAdvertiseKeys, 0, 1), make([]byte, 65)...),
		"server as sender":     append(hdr(MsgAdvertiseKeys, ServerID, ServerID), make([]byte, 65)...),
		"bad signature flag":   append(append(hdr(MsgAdvertiseKeys, 0, ServerID), make([]byte, 64)...), 2),
		"unsorted survivors":   u32(u32(hdr(MsgConsistencyRequest, ServerID, 0), 2), 5, 3),
		"duplicate survivors":  u32(u32(hdr(MsgConsistencyRequest, ServerID, 0), 2), 3, 3),
		"huge count":           u32(hdr(MsgConsistencyRequest, ServerID, 0), 1<<30),
		"count beyond data":    u32(hdr(MsgConsistencyRequest, ServerID, 0), 1000, 1),
		"ring bits 0":          u32(append(hdr(MsgMaskedInput, 0, ServerID), 0), 10),
		"ring bits 33":         u32(append(hdr(MsgMaskedInput, 0, ServerID), 33), 10),
		"masked short":         append(u32(append(hdr(MsgMaskedInput, 0, ServerID), 8), 10), make([]byte, 9)...),
		"masked dirty padding": append(u32(append(hdr(MsgMaskedInput, 0, ServerID), 3), 2), 0x80),
		"share kind 3":         append(append(u32(u32(hdr(MsgUnmaskShares, 0, ServerID), 1), 4), 3), make([]byte, 40)...),
		"share not in field":   append(append(u32(u32(hdr(MsgUnmaskShares, 0, ServerID), 1), 4), 1), bytes.Repeat([]byte{0xff}, 40)...),
		"server id in list":    u32(u32(hdr(MsgConsistencyRequest, ServerID, 0), 1), ServerID),
	}
	for name, data := range cases {
		if _, err := decode(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzDecode: the decoder never panics, bounds its allocations by the input size, and accepts
// only canonical encodings (decode then encode gives back the input).
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages(f) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if again := m.encode(); !bytes.Equal(again, data) {
			t.Fatalf("accepted a non-canonical %v", m.Type)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzDecode from real protocol messages when
// SECAGG_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("SECAGG_WRITE_CORPUS") != "1" {
		t.Skip("set SECAGG_WRITE_CORPUS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seen := map[MsgType]int{}
	for _, data := range sampleMessages(t) {
		h, _ := Peek(data)
		if seen[h.Type] >= 2 {
			continue
		}
		seen[h.Type]++
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		name := fmt.Sprintf("%s-%d", h.Type, seen[h.Type])
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
