package grpctransport

import (
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"unsafe"

	shoalv1 "shoal/proto/shoal/v1"
)

// ProtocolVersion is the wire protocol version this package speaks.
const ProtocolVersion = 1

// DefaultChunkSize is the payload bytes per Chunk message.
const DefaultChunkSize = 1 << 20

// messageOverhead is what a Chunk's header, offset and framing add to its data; the gRPC
// receive limit is the chunk size plus this, so no single message can be large.
const messageOverhead = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// errProtocol marks a message that breaks the protocol (malformed, oversized, out of order):
// the session that sent it is closed.
var errProtocol = errors.New("protocol violation")

func violation(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, a...))
}

// littleEndian reports whether float32s can be sent as their in-memory bytes.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// floatBytes returns params as little-endian bytes: a view of params itself on little-endian
// machines (no copy of a 100 MB model per client), a converted copy elsewhere.
func floatBytes(params []float32) []byte {
	if len(params) == 0 {
		return nil
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&params[0])), 4*len(params))
	}
	b := make([]byte, 4*len(params))
	for i, p := range params {
		bits := math.Float32bits(p)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
	}
	return b
}

// bytesFloats decodes little-endian float32s. On little-endian machines the result aliases b
// when b is suitably aligned (it is for buffers this package allocates), so b must not be
// reused afterwards.
func bytesFloats(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("parameter payload of %d bytes is not a whole number of float32s", len(b))
	}
	if len(b) == 0 {
		return []float32{}, nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), nil
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
	}
	return out, nil
}

// header is the comparable form of shoalv1.Header.
type header struct {
	run    string
	round  uint32
	stage  uint32
	taskID uint64
}

func headerOf(h *shoalv1.Header) header {
	if h == nil {
		return header{}
	}
	return header{run: h.GetRunId(), round: h.GetRound(), stage: h.GetStage(), taskID: h.GetTaskId()}
}

func (h header) proto() *shoalv1.Header {
	return &shoalv1.Header{RunId: h.run, Round: h.round, Stage: h.stage, TaskId: h.taskID}
}

func (h header) String() string {
	return fmt.Sprintf("run %q round %d stage %d task %d", h.run, h.round, h.stage, h.taskID)
}

// assembly reassembles one payload from its chunks, refusing anything out of order, foreign,
// oversized or corrupt. It grows its buffer only as data arrives (a peer cannot make it
// allocate more than it has sent, beyond one chunk), unless the size is known in advance to be
// legitimate (preallocate).
type assembly struct {
	hdr       header
	size      uint64
	crc       uint32
	maxChunk  int
	buf       []byte
	discard   bool // validate and count, but keep nothing (an answer nobody waits for any more)
	received  uint64
	completed bool
}

// newAssembly starts a payload of the announced size, refused beyond limit.
func newAssembly(h header, p *shoalv1.Payload, limit uint64, maxChunk int, preallocate bool) (*assembly, error) {
	size := p.GetSize()
	if size > limit {
		return nil, violation("payload of %d bytes exceeds the limit of %d for %s", size, limit, h)
	}
	a := &assembly{hdr: h, size: size, crc: p.GetCrc32C(), maxChunk: maxChunk}
	if preallocate {
		a.buf = make([]byte, 0, size)
	}
	return a, nil
}

// add takes the next chunk and reports whether the payload is complete.
func (a *assembly) add(c *shoalv1.Chunk) (bool, error) {
	if a.completed {
		return true, violation("chunk after the end of the payload of %s", a.hdr)
	}
	if got := headerOf(c.GetHeader()); got != a.hdr {
		return false, violation("chunk of %s while receiving the payload of %s", got, a.hdr)
	}
	data := c.GetData()
	switch {
	case len(data) == 0:
		return false, violation("empty chunk for %s", a.hdr)
	case len(data) > a.maxChunk:
		return false, violation("chunk of %d bytes exceeds the chunk size %d", len(data), a.maxChunk)
	case c.GetOffset() != a.received:
		return false, violation("chunk at offset %d, expected %d, for %s", c.GetOffset(), a.received, a.hdr)
	case uint64(len(data)) > a.size-a.received:
		return false, violation("chunks run past the announced %d bytes of %s", a.size, a.hdr)
	}
	a.received += uint64(len(data))
	if !a.discard {
		a.buf = append(a.buf, data...)
	}
	if a.received < a.size {
		return false, nil
	}
	a.completed = true
	if !a.discard && checksum(a.buf) != a.crc {
		return true, violation("payload of %s fails its CRC-32C check", a.hdr)
	}
	return true, nil
}

// done reports a payload that needs no chunks at all.
func (a *assembly) done() bool { return a.size == 0 }

// bytes is the reassembled payload (nil for an empty one).
func (a *assembly) bytes() []byte {
	if a.size == 0 {
		return nil
	}
	return a.buf
}

// chunks calls send for each chunk of payload under header h.
func chunks(h *shoalv1.Header, payload []byte, chunkSize int, send func(*shoalv1.Chunk) error) error {
	for off := 0; off < len(payload); off += chunkSize {
		end := min(off+chunkSize, len(payload))
		if err := send(&shoalv1.Chunk{Header: h, Offset: uint64(off), Data: payload[off:end]}); err != nil {
			return err
		}
	}
	return nil
}

// validName accepts client names of 1–128 characters from [A-Za-z0-9._@-], so names are safe
// in logs, metrics and file names.
func validName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("client name must have 1 to 128 characters, got %d", len(name))
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '@'
		if !ok {
			return fmt.Errorf("client name %q: only letters, digits and . _ - @ are allowed", name)
		}
	}
	return nil
}

func kindName(k shoalv1.TaskKind) string {
	switch k {
	case shoalv1.TaskKind_TASK_KIND_FIT:
		return "fit"
	case shoalv1.TaskKind_TASK_KIND_EVALUATE:
		return "evaluate"
	case shoalv1.TaskKind_TASK_KIND_EXCHANGE:
		return "exchange"
	}
	return "unknown"
}
