package he

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/tuneinsight/lattigo/v6/ring"
)

// Every message starts with the 4-byte magic, a format version and a message type, so a
// message of one kind can never be decoded as another.
const (
	wireMagic   = "SHHE"
	wireVersion = 2
)

type msgType byte

const (
	typeParams msgType = iota + 1
	typePublicSetup
	typeKeyMaterial
	typeKeyGenShare
	typeDirectory
	typeSealedShare
	typeUpload
	typeDecryptRequest
	typeDecryptShare
	typeCeremony
	typeKeyCommitment
	typeEndorsement
	typeApprovalRequest
	typeApproval
)

func (t msgType) String() string {
	switch t {
	case typeParams:
		return "params"
	case typePublicSetup:
		return "public setup"
	case typeKeyMaterial:
		return "key material"
	case typeKeyGenShare:
		return "key generation share"
	case typeDirectory:
		return "ceremony directory"
	case typeSealedShare:
		return "sealed share"
	case typeUpload:
		return "upload"
	case typeDecryptRequest:
		return "decryption request"
	case typeDecryptShare:
		return "decryption share"
	case typeCeremony:
		return "ceremony"
	case typeKeyCommitment:
		return "key commitment"
	case typeEndorsement:
		return "endorsement"
	case typeApprovalRequest:
		return "approval request"
	case typeApproval:
		return "approval"
	}
	return fmt.Sprintf("message type %d", byte(t))
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("he: malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

type encoder struct{ b []byte }

func newEncoder(t msgType, sizeHint int) *encoder {
	return appendEncoder(nil, t, sizeHint)
}

// appendEncoder starts a message at the end of dst, growing it once for the whole message.
func appendEncoder(dst []byte, t msgType, sizeHint int) *encoder {
	e := &encoder{b: slices.Grow(dst, 6+sizeHint)}
	e.b = append(e.b, wireMagic...)
	e.b = append(e.b, wireVersion, byte(t))
	return e
}

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) raw(b []byte) { e.b = append(e.b, b...) }

// bytes writes a length-prefixed byte string.
func (e *encoder) bytes(b []byte) {
	e.u32(uint32(len(b)))
	e.b = append(e.b, b...)
}

// poly appends a polynomial in Lattigo's binary format (Poly.MarshalBinary: u64 row
// count, then per row a u64 length and the coefficients, all little-endian). It is
// written here with one tight loop because Lattigo's generic writer costs about 20 ns
// per coefficient; TestPolyFormatMatchesLattigo pins the two encodings together.
func (e *encoder) poly(p ring.Poly) error {
	size := p.BinarySize()
	e.b = slices.Grow(e.b, size)
	n := len(e.b)
	dst := e.b[n : n+size]
	binary.LittleEndian.PutUint64(dst, uint64(len(p.Coeffs)))
	off := 8
	for _, row := range p.Coeffs {
		binary.LittleEndian.PutUint64(dst[off:], uint64(len(row)))
		off += 8
		out := dst[off : off+8*len(row)]
		for i, c := range row {
			binary.LittleEndian.PutUint64(out[8*i:], c)
		}
		off += 8 * len(row)
	}
	e.b = e.b[:n+size]
	return nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func newDecoder(b []byte, want msgType) (*decoder, error) {
	if len(b) < 6 {
		return nil, malformed("%s: %d bytes is shorter than the header", want, len(b))
	}
	if string(b[:4]) != wireMagic {
		return nil, malformed("%s: bad magic %q", want, b[:4])
	}
	if b[4] != wireVersion {
		return nil, malformed("%s: unsupported version %d", want, b[4])
	}
	if got := msgType(b[5]); got != want {
		return nil, malformed("expected %s, got %s", want, got)
	}
	return &decoder{b: b, off: 6}, nil
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = malformed(format, args...)
	}
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("truncated %s: need %d bytes, have %d", what, n, len(d.b)-d.off)
		return nil
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

func (d *decoder) u8(what string) uint8 {
	s := d.take(1, what)
	if s == nil {
		return 0
	}
	return s[0]
}

func (d *decoder) u32(what string) uint32 {
	s := d.take(4, what)
	if s == nil {
		return 0
	}
	return binary.BigEndian.Uint32(s)
}

func (d *decoder) u64(what string) uint64 {
	s := d.take(8, what)
	if s == nil {
		return 0
	}
	return binary.BigEndian.Uint64(s)
}

// bytes reads a length-prefixed byte string of at most max bytes.
func (d *decoder) bytes(max int, what string) []byte {
	n := d.u32(what + " length")
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(max) {
		d.fail("%s length %d exceeds %d", what, n, max)
		return nil
	}
	return d.take(int(n), what)
}

// count reads a u32 count bounded by max.
func (d *decoder) count(max int, what string) int {
	n := d.u32(what)
	if d.err == nil && uint64(n) > uint64(max) {
		d.fail("%s %d exceeds %d", what, n, max)
		return 0
	}
	return int(n)
}

// poly reads one polynomial of the parameters' shape into dst, reusing its memory.
// The Lattigo header is checked before Lattigo parses it (so no attacker-chosen
// allocation happens) and every coefficient must be reduced modulo its prime.
func (d *decoder) poly(p *Params, dst *ring.Poly, what string) {
	raw := d.take(p.polyBytes(), what)
	if raw == nil {
		return
	}
	if err := checkPoly(p, raw); err != nil {
		d.fail("%s: %v", what, err)
		return
	}
	readPoly(p, raw, dst)
}

// readPoly fills dst (allocating it if it has the wrong shape) from a polynomial
// encoding already validated by checkPoly.
func readPoly(p *Params, raw []byte, dst *ring.Poly) {
	L, n := len(p.moduli), p.N()
	if len(dst.Coeffs) != L || len(dst.Coeffs[0]) != n {
		*dst = p.rlwe.RingQ().NewPoly()
	}
	off := 8
	for j := 0; j < L; j++ {
		off += 8
		row := dst.Coeffs[j]
		src := raw[off : off+8*n]
		for i := range row {
			row[i] = binary.LittleEndian.Uint64(src[8*i:])
		}
		off += 8 * n
	}
}

// checkPoly validates Lattigo's polynomial encoding: u64 row count, then per row a
// u64 length and that many u64 coefficients, all little-endian.
func checkPoly(p *Params, raw []byte) error {
	L, n := len(p.moduli), p.N()
	if len(raw) != p.polyBytes() {
		return fmt.Errorf("polynomial is %d bytes, want %d", len(raw), p.polyBytes())
	}
	if rows := binary.LittleEndian.Uint64(raw); rows != uint64(L) {
		return fmt.Errorf("polynomial has %d moduli, want %d", rows, L)
	}
	off := 8
	for j := 0; j < L; j++ {
		if got := binary.LittleEndian.Uint64(raw[off:]); got != uint64(n) {
			return fmt.Errorf("polynomial row %d has %d coefficients, want %d", j, got, n)
		}
		off += 8
		q := p.moduli[j]
		row := raw[off : off+8*n]
		for i := 0; i < len(row); i += 8 {
			if binary.LittleEndian.Uint64(row[i:]) >= q {
				return fmt.Errorf("coefficient %d of row %d not reduced modulo %d", i/8, j, q)
			}
		}
		off += 8 * n
	}
	return nil
}

// done reports the first error, or an error if bytes are left over.
func (d *decoder) done() error {
	if d.err != nil {
		return d.err
	}
	if d.off != len(d.b) {
		return malformed("%d trailing bytes", len(d.b)-d.off)
	}
	return nil
}

// MarshalBinary encodes the parameter set.
func (p *Params) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeParams, 4+8*len(p.moduli))
	p.encodeTo(e)
	return e.b, nil
}

func (p *Params) encodeTo(e *encoder) {
	e.u8(uint8(p.logN))
	e.u8(uint8(len(p.moduli)))
	for _, q := range p.moduli {
		e.u64(q)
	}
	e.u8(uint8(p.logScale))
	e.u8(uint8(p.logSmudging))
}

func decodeParamsFrom(d *decoder) *Params {
	logN := int(d.u8("log N"))
	L := int(d.u8("moduli count"))
	if d.err == nil && (L < 1 || L > maxModuli) {
		d.fail("moduli count %d outside [1, %d]", L, maxModuli)
	}
	if d.err != nil {
		return nil
	}
	moduli := make([]uint64, L)
	for i := range moduli {
		moduli[i] = d.u64("modulus")
	}
	logScale := int(d.u8("log scale"))
	logSmudging := int(d.u8("log smudging"))
	if d.err != nil {
		return nil
	}
	p, err := newParams(logN, moduli, logScale, logSmudging)
	if err != nil {
		d.fail("parameters: %v", err)
		return nil
	}
	return p
}

// DecodeParams decodes and checks a parameter set.
func DecodeParams(b []byte) (*Params, error) {
	d, err := newDecoder(b, typeParams)
	if err != nil {
		return nil, err
	}
	p := decodeParamsFrom(d)
	if err := d.done(); err != nil {
		return nil, err
	}
	return p, nil
}
