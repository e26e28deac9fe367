package he

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	fuzzOnce sync.Once
	fuzzP    *Params
	fuzzMsgs map[string][]byte
)

// fuzzSeeds returns valid encodings of every message kind (computed once).
func fuzzSeeds(t testing.TB) (*Params, map[string][]byte) {
	fuzzOnce.Do(func() {
		p, msgs := allMessages(t)
		fuzzP, fuzzMsgs = p, map[string][]byte{}
		for _, m := range msgs {
			fuzzMsgs[m.name] = m.b
		}
	})
	return fuzzP, fuzzMsgs
}

// fuzzDecoder checks that a decoder never panics, and that whatever it accepts
// re-encodes to exactly the input (the encoding is canonical).
func fuzzDecoder(f *testing.F, name string, decode func(p *Params, b []byte) (marshaler, error)) {
	p, seeds := fuzzSeeds(f)
	f.Add(seeds[name])
	f.Add(seeds[name][:min(len(seeds[name]), 64)])
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(p, b)
		if err != nil {
			return
		}
		again, err := v.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted message does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted message re-encodes differently")
		}
	})
}

func FuzzDecodeParams(f *testing.F) {
	fuzzDecoder(f, "params", func(_ *Params, b []byte) (marshaler, error) { return DecodeParams(b) })
}

func FuzzDecodeCeremony(f *testing.F) {
	fuzzDecoder(f, "ceremony", func(_ *Params, b []byte) (marshaler, error) { return DecodeCeremony(b) })
}

func FuzzDecodeKeyGenShare(f *testing.F) {
	fuzzDecoder(f, "keygen share", func(p *Params, b []byte) (marshaler, error) { return DecodeKeyGenShare(p, b) })
}

func FuzzDecodeDirectory(f *testing.F) {
	fuzzDecoder(f, "directory", func(_ *Params, b []byte) (marshaler, error) { return DecodeDirectory(b) })
}

func FuzzDecodeKeyCommitment(f *testing.F) {
	fuzzDecoder(f, "key commitment", func(_ *Params, b []byte) (marshaler, error) { return DecodeKeyCommitment(b) })
}

func FuzzDecodeEndorsement(f *testing.F) {
	fuzzDecoder(f, "endorsement", func(_ *Params, b []byte) (marshaler, error) { return DecodeEndorsement(b) })
}

func FuzzDecodeApprovalRequest(f *testing.F) {
	fuzzDecoder(f, "approval request", func(_ *Params, b []byte) (marshaler, error) { return DecodeApprovalRequest(b) })
}

func FuzzDecodeApproval(f *testing.F) {
	fuzzDecoder(f, "approval", func(_ *Params, b []byte) (marshaler, error) { return DecodeApproval(b) })
}

func FuzzDecodeSealedShare(f *testing.F) {
	fuzzDecoder(f, "sealed share", func(p *Params, b []byte) (marshaler, error) { return DecodeSealedShare(p, b) })
}

func FuzzDecodePublicSetup(f *testing.F) {
	fuzzDecoder(f, "public setup", func(_ *Params, b []byte) (marshaler, error) { return DecodePublicSetup(b) })
}

func FuzzDecodeKeyMaterial(f *testing.F) {
	fuzzDecoder(f, "key material", func(_ *Params, b []byte) (marshaler, error) { return DecodeKeyMaterial(b) })
}

func FuzzDecodeUpload(f *testing.F) {
	fuzzDecoder(f, "upload", func(p *Params, b []byte) (marshaler, error) { return DecodeUpload(p, b) })
}

func FuzzDecodeDecryptRequest(f *testing.F) {
	fuzzDecoder(f, "decrypt request", func(p *Params, b []byte) (marshaler, error) { return DecodeDecryptRequest(p, b) })
}

func FuzzDecodeDecryptShare(f *testing.F) {
	fuzzDecoder(f, "decrypt share", func(p *Params, b []byte) (marshaler, error) { return DecodeDecryptShare(p, b) })
}

// FuzzAggregatorAddEncoded feeds arbitrary bytes to the server's streaming decoder:
// it must never panic and a rejected upload must leave the aggregate unchanged.
func FuzzAggregatorAddEncoded(f *testing.F) {
	p, seeds := fuzzSeeds(f)
	f.Add(seeds["upload"])
	f.Add(seeds["upload"][:64])
	_ = p
	f.Fuzz(func(t *testing.T, b []byte) {
		_, msgs := fuzzSeeds(t)
		setup, err := DecodePublicSetup(msgs["public setup"])
		if err != nil {
			t.Fatal(err)
		}
		a := newTestAggregator(t, setup, 4, 10)
		if err := a.AddEncoded(b); err != nil && !aggregateIsZero(a) {
			t.Fatal("rejected upload changed the aggregate")
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz when HE_WRITE_CORPUS=1: the valid
// small messages in full and the headers (first 64 bytes) of the large ones.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("HE_WRITE_CORPUS") != "1" {
		t.Skip("set HE_WRITE_CORPUS=1 to regenerate the seed corpus")
	}
	_, seeds := fuzzSeeds(t)
	targets := map[string]string{
		"params": "FuzzDecodeParams", "ceremony": "FuzzDecodeCeremony", "keygen share": "FuzzDecodeKeyGenShare",
		"directory": "FuzzDecodeDirectory", "sealed share": "FuzzDecodeSealedShare", "public setup": "FuzzDecodePublicSetup",
		"key material": "FuzzDecodeKeyMaterial", "upload": "FuzzDecodeUpload", "decrypt request": "FuzzDecodeDecryptRequest",
		"decrypt share": "FuzzDecodeDecryptShare", "key commitment": "FuzzDecodeKeyCommitment",
		"endorsement": "FuzzDecodeEndorsement", "approval request": "FuzzDecodeApprovalRequest",
		"approval": "FuzzDecodeApproval",
	}
	for name, target := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b := seeds[name]
		write := func(file string, data []byte) {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if len(b) <= 1024 {
			write("valid", b)
		}
		write("header", b[:min(len(b), 64)])
		write("truncated-half", b[:min(len(b), 512)/2])
	}
}

func aggregateIsZero(a *Aggregator) bool {
	for _, ct := range a.sum {
		for _, pol := range ct {
			for _, row := range pol.Coeffs {
				for _, c := range row {
					if c != 0 {
						return false
					}
				}
			}
		}
	}
	return true
}

// FuzzDecryptorShareEncoded feeds arbitrary bytes to a member's streaming request
// decoder: it must never panic, and a rejected request must not move its round counter.
func FuzzDecryptorShareEncoded(f *testing.F) {
	_, seeds := fuzzSeeds(f)
	f.Add(seeds["decrypt request"])
	f.Add(seeds["decrypt request"][:64])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, msgs := fuzzSeeds(t)
		km, err := DecodeKeyMaterial(msgs["key material"])
		if err != nil {
			t.Fatal(err)
		}
		d := newTestDecryptor(t, km)
		if _, err := d.ShareEncoded(b); err != nil {
			if round, ok := d.LastRound(); ok {
				t.Fatalf("rejected request moved the round counter to %d", round)
			}
		}
	})
}
