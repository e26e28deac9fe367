// Package golden compares encodings with the golden files committed under a package's
// testdata/golden, in the way Go's crypto/tls handshake tests do: a change of a wire or file
// format is a visible diff of those files, not a silent round trip. Tests of secagg, he and
// grpctransport use it; it depends on nothing of Shoal.
package golden

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Files is a package's golden files: Update rewrites them (wire it to a -update test flag) and
// UpdateCmd is the command a failure message tells the developer to run.
type Files struct {
	Update    bool
	UpdateCmd string
}

// Check compares got with testdata/golden/<name>.golden (or, with Update, rewrites the file)
// and returns the golden bytes, for the caller to decode.
func (f Files) Check(t testing.TB, name string, got []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".golden")
	if f.Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v; to create it, run `%s`", path, err, f.UpdateCmd)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("golden file %s does not match the encoding: %s. If the wire-format change is intended, run `%s` and review the diff",
			path, Diff(got, want), f.UpdateCmd)
	}
	return want
}

// Diff describes where got and want first differ.
func Diff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	window := func(b []byte) string {
		if i >= len(b) {
			return "(end)"
		}
		return fmt.Sprintf("% x", b[i:min(i+16, len(b))])
	}
	return fmt.Sprintf("first difference at offset %d (0x%x): got %s, want %s; got %d bytes, want %d",
		i, i, window(got), window(want), len(got), len(want))
}

// Stream is a deterministic byte stream, SHA-256 in counter mode over a seed: the fixed
// randomness that makes a protocol run, and so its messages, the same on every machine. It is
// defined here, independent of the packages under test, so that the vectors depend on nothing
// but the code that encodes them.
type Stream struct {
	seed [32]byte
	ctr  uint64
	buf  []byte
}

// NewStream returns the stream of seed.
func NewStream(seed [32]byte) *Stream { return &Stream{seed: seed} }

// Read fills p; it never fails.
func (s *Stream) Read(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(s.buf) == 0 {
			var block [40]byte
			copy(block[:], s.seed[:])
			binary.BigEndian.PutUint64(block[32:], s.ctr)
			s.ctr++
			sum := sha256.Sum256(block[:])
			s.buf = sum[:]
		}
		c := copy(p, s.buf)
		s.buf, p = s.buf[c:], p[c:]
	}
	return n, nil
}
