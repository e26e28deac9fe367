package strategy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Server-optimiser state (FedAvgM's velocity, FedOpt's moments) is saved with every committed
// round so that a resumed run continues exactly: "SHSTRAT1", the strategy name, the number of
// vectors, then each vector as a uint64 length and little-endian float64s.
const stateMagic = "SHSTRAT1"

// maxStateLen bounds a decoded vector so a corrupt state cannot make us allocate without limit.
const maxStateLen = 1 << 30

func encodeState(name string, vecs ...[]float64) []byte {
	n := len(stateMagic) + 1 + len(name) + 1
	for _, v := range vecs {
		n += 8 + 8*len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, stateMagic...)
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = append(b, byte(len(vecs)))
	for _, v := range vecs {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
	}
	return b
}

func decodeState(name string, want int, b []byte) ([][]float64, error) {
	bad := func(why string) error { return fmt.Errorf("strategy %s state: %s", name, why) }
	if len(b) < len(stateMagic)+2 || string(b[:len(stateMagic)]) != stateMagic {
		return nil, bad("not a strategy state")
	}
	b = b[len(stateMagic):]
	nl := int(b[0])
	if len(b) < 1+nl+1 || string(b[1:1+nl]) != name {
		return nil, bad("saved by another strategy")
	}
	b = b[1+nl:]
	if int(b[0]) != want {
		return nil, bad(fmt.Sprintf("%d vectors, want %d", b[0], want))
	}
	b = b[1:]
	out := make([][]float64, want)
	for i := range out {
		if len(b) < 8 {
			return nil, bad("truncated")
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if n > maxStateLen || uint64(len(b)) < 8*n {
			return nil, bad("truncated or oversized vector")
		}
		v := make([]float64, n)
		for j := range v {
			v[j] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*j:]))
			if math.IsNaN(v[j]) || math.IsInf(v[j], 0) {
				return nil, bad("non-finite value")
			}
		}
		out[i] = v
		b = b[8*n:]
	}
	if len(b) != 0 {
		return nil, bad("trailing bytes")
	}
	if want == 2 && len(out[0]) != len(out[1]) {
		return nil, errors.New("strategy state: moment vectors of different lengths")
	}
	return out, nil
}
