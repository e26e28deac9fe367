package process

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"
)

func rawFrame(hdr string, plen uint64, payload []byte) []byte {
	var prefix [16]byte
	copy(prefix[:4], magic)
	binary.LittleEndian.PutUint32(prefix[4:8], uint32(len(hdr)))
	binary.LittleEndian.PutUint64(prefix[8:16], plen)
	return append(append(prefix[:], hdr...), payload...)
}

// A child's frame whose announced counts overflow the payload length (4·2⁶² wraps to 0), or
// exceed what any layout can hold, must be a protocol violation before anything is allocated.
func TestReadHeaderRejectsOverflowingCounts(t *testing.T) {
	for name, f := range map[string][]byte{
		"params wrap":   rawFrame(`{"type":"params","params":4611686018427387904}`, 0, nil),
		"indices wrap":  rawFrame(`{"type":"params","params":1,"indices":4611686018427387904}`, 4, make([]byte, 4)),
		"params > max":  rawFrame(`{"type":"params","params":2147483648}`, 4*2147483648, nil),
		"negative":      rawFrame(`{"type":"params","params":-1,"indices":1}`, 0, nil),
		"header length": func() []byte { b := rawFrame(`{}`, 0, nil); binary.LittleEndian.PutUint32(b[4:8], 1<<31); return b }(),
	} {
		if _, _, err := readHeader(bufio.NewReader(bytes.NewReader(f))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add(rawFrame(`{"type":"params","params":4611686018427387904}`, 0, nil))
	f.Add(rawFrame(`{"type":"params","params":2}`, 8, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, plen, err := readHeader(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if h.Params > maxParams || h.Indices > maxParams || plen != 4*uint64(h.Params)+4*uint64(h.Indices) {
			t.Fatalf("accepted params %d indices %d plen %d", h.Params, h.Indices, plen)
		}
	})
}
