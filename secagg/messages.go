package secagg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format, version 2 (version 1 had the same layout, but bound no run id into signatures,
// keys and commitments: the two cannot interoperate). Every message starts with an 18-byte
// header:
//
//	version u8 | type u8 | round u64 | sender u32 | recipient u32
//
// (big-endian; the server's id is ServerID) followed by a body whose layout depends on the type.
// Lists are a u32 count then entries strictly increasing by id, so every message has exactly
// one encoding; decoders reject anything else, including trailing bytes.
const (
	wireVersion = 2
	headerSize  = 18
)

// ServerID is the sender or recipient id of the server in message headers.
const ServerID uint32 = 0xFFFFFFFF

// BroadcastID is the recipient of a server message that is the same for every client (the key
// list of a complete graph, the survivor set): the server encodes it once.
const BroadcastID uint32 = 0xFFFFFFFE

// MsgType identifies a protocol message.
type MsgType uint8

const (
	MsgAdvertiseKeys      MsgType = 1 // client → server: channel and masking public keys, seed commitment
	MsgKeyList            MsgType = 2 // server → client: neighbours' public keys
	MsgShareKeys          MsgType = 3 // client → server: encrypted shares for each neighbour
	MsgShares             MsgType = 4 // server → client: encrypted shares addressed to it
	MsgMaskedInput        MsgType = 5 // client → server: masked input, packed in the ring
	MsgConsistencyRequest MsgType = 6 // server → client: survivor set U3 to sign (malicious variant)
	MsgConsistencySig     MsgType = 7 // client → server: signature of U3
	MsgUnmaskRequest      MsgType = 8 // server → client: U3 (and, malicious variant, signatures)
	MsgUnmaskShares       MsgType = 9 // client → server: one share per neighbour, b_u or masking key
)

var msgNames = [...]string{"", "AdvertiseKeys", "KeyList", "ShareKeys", "Shares", "MaskedInput",
	"ConsistencyRequest", "ConsistencySig", "UnmaskRequest", "UnmaskShares"}

func (t MsgType) String() string {
	if int(t) < len(msgNames) && t != 0 {
		return msgNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Share kinds in UnmaskShares.
const (
	shareSelfMask byte = 1 // share of b_u: the client survived
	shareMaskKey  byte = 2 // share of the masking secret key: the client dropped
)

const (
	keySize       = 32
	signatureSize = 64
)

// Header is the routing information of a message.
type Header struct {
	Type      MsgType
	Round     uint64
	Sender    uint32
	Recipient uint32
}

type keyEntry struct {
	id           uint32
	channel, msk [keySize]byte
	sig          []byte // signatureSize bytes, or nil
}

type cipherEntry struct {
	id uint32 // recipient (ShareKeys) or sender (Shares)
	ct []byte // shareCipherSize bytes
}

type sigEntry struct {
	id  uint32
	sig []byte
}

type shareEntry struct {
	about  uint32
	kind   byte
	chunks [chunksPerSecret]uint64
}

// message is a decoded message; only the fields of its type are set.
type message struct {
	Header
	channel, msk [keySize]byte // AdvertiseKeys
	commit       [keySize]byte // AdvertiseKeys: commitment to the self-mask seed b_u
	sig          []byte        // AdvertiseKeys (malicious variant), ConsistencySig
	keys         []keyEntry    // KeyList
	hasSigs      bool          // KeyList, UnmaskRequest
	cts          []cipherEntry // ShareKeys, Shares
	ringBits     uint8         // MaskedInput
	entries      uint32        // MaskedInput
	packed       []byte        // MaskedInput
	ids          []uint32      // ConsistencyRequest, UnmaskRequest
	sigs         []sigEntry    // UnmaskRequest
	shares       []shareEntry  // UnmaskShares
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed secagg message")

// Peek decodes only the header, for routing.
func Peek(data []byte) (Header, error) {
	if len(data) < headerSize {
		return Header{}, fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(data))
	}
	if data[0] != wireVersion {
		return Header{}, fmt.Errorf("%w: version %d, want %d", ErrMalformed, data[0], wireVersion)
	}
	h := Header{Type: MsgType(data[1]), Round: binary.BigEndian.Uint64(data[2:]),
		Sender: binary.BigEndian.Uint32(data[10:]), Recipient: binary.BigEndian.Uint32(data[14:])}
	if h.Type < MsgAdvertiseKeys || h.Type > MsgUnmaskShares {
		return Header{}, fmt.Errorf("%w: unknown type %d", ErrMalformed, data[1])
	}
	return h, nil
}

func appendHeader(dst []byte, h Header) []byte {
	dst = append(dst, wireVersion, byte(h.Type))
	dst = binary.BigEndian.AppendUint64(dst, h.Round)
	dst = binary.BigEndian.AppendUint32(dst, h.Sender)
	return binary.BigEndian.AppendUint32(dst, h.Recipient)
}

func appendFlag(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// encode serialises m.
func (m *message) encode() []byte {
	var b []byte
	switch m.Type {
	case MsgMaskedInput:
		b = make([]byte, 0, headerSize+5+len(m.packed))
	default:
		b = make([]byte, 0, 64)
	}
	b = appendHeader(b, m.Header)
	switch m.Type {
	case MsgAdvertiseKeys:
		b = append(b, m.channel[:]...)
		b = append(b, m.msk[:]...)
		b = append(b, m.commit[:]...)
		b = appendFlag(b, m.sig != nil)
		b = append(b, m.sig...)
	case MsgKeyList:
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.keys)))
		b = appendFlag(b, m.hasSigs)
		for _, k := range m.keys {
			b = binary.BigEndian.AppendUint32(b, k.id)
			b = append(b, k.channel[:]...)
			b = append(b, k.msk[:]...)
			if m.hasSigs {
				b = append(b, k.sig...)
			}
		}
	case MsgShareKeys, MsgShares:
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.cts)))
		for _, c := range m.cts {
			b = binary.BigEndian.AppendUint32(b, c.id)
			b = append(b, c.ct...)
		}
	case MsgMaskedInput:
		b = append(b, m.ringBits)
		b = binary.BigEndian.AppendUint32(b, m.entries)
		b = append(b, m.packed...)
	case MsgConsistencyRequest:
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.ids)))
		b = putUint32s(b, m.ids)
	case MsgConsistencySig:
		b = append(b, m.sig...)
	case MsgUnmaskRequest:
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.ids)))
		b = putUint32s(b, m.ids)
		b = appendFlag(b, m.hasSigs)
		if m.hasSigs {
			b = binary.BigEndian.AppendUint32(b, uint32(len(m.sigs)))
			for _, s := range m.sigs {
				b = binary.BigEndian.AppendUint32(b, s.id)
				b = append(b, s.sig...)
			}
		}
	case MsgUnmaskShares:
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.shares)))
		for _, s := range m.shares {
			b = binary.BigEndian.AppendUint32(b, s.about)
			b = append(b, s.kind)
			for _, c := range s.chunks {
				b = binary.BigEndian.AppendUint64(b, c)
			}
		}
	}
	return b
}

// reader consumes a message body, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
	}
}

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail("truncated %s: need %d bytes, have %d", what, n, len(r.b))
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(what string) byte {
	if b := r.bytes(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) flag(what string) bool {
	switch v := r.u8(what); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail("%s flag %d is not 0 or 1", what, v)
		return false
	}
}

func (r *reader) u32(what string) uint32 {
	if b := r.bytes(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.bytes(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// count reads a list length and checks that the remaining bytes can hold it (entrySize bytes
// each), so a hostile length cannot make the decoder allocate more than the message's size.
func (r *reader) count(what string, entrySize int) int {
	n := r.u32(what + " count")
	if r.err != nil {
		return 0
	}
	if n > MaxClients {
		r.fail("%s count %d exceeds %d", what, n, MaxClients)
		return 0
	}
	if int(n)*entrySize > len(r.b) {
		r.fail("%s count %d needs %d bytes, have %d", what, n, int(n)*entrySize, len(r.b))
		return 0
	}
	return int(n)
}

// increasing checks ids are strictly increasing client ids.
func (r *reader) increasing(what string, prev *int64, id uint32) {
	if id >= MaxClients || int64(id) <= *prev {
		r.fail("%s ids not strictly increasing at %d", what, id)
	}
	*prev = int64(id)
}

// decode parses a message strictly.
func decode(data []byte) (*message, error) {
	h, err := Peek(data)
	if err != nil {
		return nil, err
	}
	fromServer := h.Type == MsgKeyList || h.Type == MsgShares || h.Type == MsgConsistencyRequest || h.Type == MsgUnmaskRequest
	if fromServer != (h.Sender == ServerID) || fromServer != (h.Recipient != ServerID) {
		return nil, fmt.Errorf("%w: %v from %d to %d: wrong direction", ErrMalformed, h.Type, h.Sender, h.Recipient)
	}
	if h.Recipient == BroadcastID && (h.Type == MsgShares || !fromServer) {
		return nil, fmt.Errorf("%w: %v cannot be broadcast", ErrMalformed, h.Type)
	}
	m := &message{Header: h}
	r := &reader{b: data[headerSize:]}
	prev := int64(-1)
	switch h.Type {
	case MsgAdvertiseKeys:
		copy(m.channel[:], r.bytes(keySize, "channel key"))
		copy(m.msk[:], r.bytes(keySize, "masking key"))
		copy(m.commit[:], r.bytes(keySize, "seed commitment"))
		if r.flag("signature") {
			m.sig = r.bytes(signatureSize, "signature")
		}
	case MsgKeyList:
		n := r.count("key list", 4+2*keySize)
		m.hasSigs = r.flag("signatures")
		if r.err == nil {
			m.keys = make([]keyEntry, n)
		}
		for i := 0; i < n && r.err == nil; i++ {
			k := &m.keys[i]
			k.id = r.u32("key list id")
			r.increasing("key list", &prev, k.id)
			copy(k.channel[:], r.bytes(keySize, "channel key"))
			copy(k.msk[:], r.bytes(keySize, "masking key"))
			if m.hasSigs {
				k.sig = r.bytes(signatureSize, "signature")
			}
		}
	case MsgShareKeys, MsgShares:
		n := r.count("share list", 4+shareCipherSize)
		if r.err == nil {
			m.cts = make([]cipherEntry, n)
		}
		for i := 0; i < n && r.err == nil; i++ {
			c := &m.cts[i]
			c.id = r.u32("share id")
			r.increasing("share list", &prev, c.id)
			c.ct = r.bytes(shareCipherSize, "encrypted share")
		}
	case MsgMaskedInput:
		m.ringBits = r.u8("ring bits")
		m.entries = r.u32("entries")
		if r.err == nil && (m.ringBits < 1 || m.ringBits > 32) {
			r.fail("ring bits %d out of [1, 32]", m.ringBits)
		}
		if r.err == nil && (m.entries < 2 || m.entries > MaxDim+1) {
			r.fail("entries %d out of [2, %d]", m.entries, MaxDim+1)
		}
		if r.err == nil {
			size := packedSize(int(m.entries), int(m.ringBits))
			m.packed = r.bytes(size, "packed input")
			if r.err == nil {
				if pad := size*8 - int(m.entries)*int(m.ringBits); pad > 0 && m.packed[size-1]>>(8-pad) != 0 {
					r.fail("non-zero padding bits")
				}
			}
		}
	case MsgConsistencyRequest:
		n := r.count("survivor list", 4)
		m.ids = r.ids(n, "survivor list")
	case MsgConsistencySig:
		m.sig = r.bytes(signatureSize, "signature")
	case MsgUnmaskRequest:
		n := r.count("survivor list", 4)
		m.ids = r.ids(n, "survivor list")
		m.hasSigs = r.flag("signatures")
		if m.hasSigs {
			ns := r.count("signature list", 4+signatureSize)
			if r.err == nil {
				m.sigs = make([]sigEntry, ns)
			}
			for i := 0; i < ns && r.err == nil; i++ {
				m.sigs[i].id = r.u32("signature id")
				r.increasing("signature list", &prev, m.sigs[i].id)
				m.sigs[i].sig = r.bytes(signatureSize, "signature")
			}
		}
	case MsgUnmaskShares:
		n := r.count("unmask shares", 5+8*chunksPerSecret)
		if r.err == nil {
			m.shares = make([]shareEntry, n)
		}
		for i := 0; i < n && r.err == nil; i++ {
			s := &m.shares[i]
			s.about = r.u32("share subject")
			r.increasing("unmask shares", &prev, s.about)
			s.kind = r.u8("share kind")
			if r.err == nil && s.kind != shareSelfMask && s.kind != shareMaskKey {
				r.fail("share kind %d unknown", s.kind)
			}
			for j := range s.chunks {
				s.chunks[j] = r.u64("share")
				if r.err == nil && s.chunks[j] >= fieldP {
					r.fail("share value not a field element")
				}
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes after %v", len(r.b), h.Type)
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

func (r *reader) ids(n int, what string) []uint32 {
	if r.err != nil {
		return nil
	}
	out := make([]uint32, n)
	prev := int64(-1)
	for i := range out {
		out[i] = r.u32(what)
		r.increasing(what, &prev, out[i])
	}
	return out
}

// packedSize is the byte length of entries values of ringBits bits packed tightly.
func packedSize(entries, ringBits int) int {
	return (entries*ringBits + 7) / 8
}

// packRing packs the low ringBits (≤ 32) bits of each value, little-endian bit order, into dst
// (packedSize bytes). Bits leave through a 64-bit register 32 at a time.
func packRing(dst []byte, vals []uint32, ringBits int) {
	mask := uint64(1)<<ringBits - 1
	var acc uint64
	nbits := 0
	o := 0
	for _, v := range vals {
		acc |= (uint64(v) & mask) << nbits
		nbits += ringBits
		if nbits >= 32 {
			binary.LittleEndian.PutUint32(dst[o:], uint32(acc))
			o += 4
			acc >>= 32
			nbits -= 32
		}
	}
	for ; nbits > 0; nbits -= 8 {
		dst[o] = byte(acc)
		o++
		acc >>= 8
	}
}

// addPacked adds the packed ring values of src into acc (mod 2^32). Each entry is read with one
// unaligned 64-bit load at its bit offset (two entries per load when 2k+7 ≤ 64), so iterations
// do not depend on each other; the entries within 8 bytes of the end are read byte by byte.
func addPacked(acc []uint32, src []byte, ringBits int) {
	mask := uint64(1)<<ringBits - 1
	k := uint(ringBits)
	safe := 0
	if len(src) >= 8 {
		safe = min(len(acc), ((len(src)-8)*8)/ringBits+1)
	}
	bit := uint(0)
	i := 0
	if 2*k+7 <= 64 {
		for ; i+1 < safe; i += 2 {
			w := binary.LittleEndian.Uint64(src[bit>>3:]) >> (bit & 7)
			acc[i] += uint32(w & mask)
			acc[i+1] += uint32((w >> k) & mask)
			bit += 2 * k
		}
	}
	for ; i < safe; i++ {
		w := binary.LittleEndian.Uint64(src[bit>>3:])
		acc[i] += uint32((w >> (bit & 7)) & mask)
		bit += k
	}
	for ; i < len(acc); i++ {
		var w uint64
		for j := uint(0); j < 8 && int(bit>>3)+int(j) < len(src); j++ {
			w |= uint64(src[int(bit>>3)+int(j)]) << (8 * j)
		}
		acc[i] += uint32((w >> (bit & 7)) & mask)
		bit += k
	}
}
