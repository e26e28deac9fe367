package grpctransport

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"shoal/fl"
	"shoal/internal/golden"
	shoalv1 "shoal/proto/shoal/v1"
)

// Golden wire-format vectors, in the style of crypto/tls's handshake tests: the payload
// framing of wire.go (float32 encoding, CRC-32C, chunking) and one example of every message
// the runtime sends, marshalled deterministically, are compared byte for byte with
// testdata/golden/<name>.golden. A change of shoal.proto's field numbers or types, or of the
// payload framing, shows up as a diff of those files instead of passing silently through a
// round trip. After an intended change, rewrite them with
//
//	go test ./transport/grpctransport -run Golden -update
//
// and review the diff.

var update = flag.Bool("update", false, "rewrite the golden files")

const goldenUpdateCmd = "go test ./transport/grpctransport -run Golden -update"

// goldenMarshal is the encoding the vectors pin: proto.Marshal with deterministic field and map
// order.
func goldenMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGolden compares got with testdata/golden/<name>.golden (or rewrites the file with
// -update) and returns the golden bytes, for the caller to decode.
func checkGolden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	return golden.Files{Update: *update, UpdateCmd: goldenUpdateCmd}.Check(t, name, got)
}

// goldenParams covers the float32 cases a model can hold: signed zeros, ordinary values,
// the smallest subnormal, the largest finite value, infinities and a quiet NaN.
var goldenParams = []float32{
	0, float32(math.Copysign(0, -1)), 1, -1.5, math.Pi, 0.1,
	math.SmallestNonzeroFloat32, math.MaxFloat32,
	float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00000),
}

var goldenHeader = header{run: "golden-run", round: 3, stage: 0, taskID: 42}

// goldenChunkSize splits the 44-byte parameter payload into chunks of 16, 16 and 12 bytes.
const goldenChunkSize = 16

// TestGoldenFloatBytes pins floatBytes: little-endian IEEE 754 binary32, 4 bytes per value.
func TestGoldenFloatBytes(t *testing.T) {
	want := checkGolden(t, "floats", bytes.Clone(floatBytes(goldenParams)))
	// Decode the golden bytes both ways bytesFloats can: aliasing an aligned buffer, and
	// converting a misaligned one.
	aligned := make([]float32, len(want)/4+1)
	alignedBytes := floatBytes(aligned)[:len(want)]
	copy(alignedBytes, want)
	misaligned := make([]byte, len(want)+1)[1:]
	copy(misaligned, want)
	for name, b := range map[string][]byte{"aligned": alignedBytes, "misaligned": misaligned} {
		vals, err := bytesFloats(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(vals) != len(goldenParams) {
			t.Fatalf("%s: %d values, want %d", name, len(vals), len(goldenParams))
		}
		for i, v := range vals {
			if math.Float32bits(v) != math.Float32bits(goldenParams[i]) {
				t.Errorf("%s: value %d decodes to %#08x, want %#08x", name, i, math.Float32bits(v), math.Float32bits(goldenParams[i]))
			}
		}
		if re := floatBytes(vals); !bytes.Equal(re, want) {
			t.Errorf("%s: golden floats re-encode differently: %s", name, golden.Diff(re, want))
		}
	}
}

// TestGoldenChecksum pins the payload checksum as CRC-32C (Castagnoli), in a readable file.
func TestGoldenChecksum(t *testing.T) {
	// The standard check value of CRC-32C, independent of any golden file.
	if got := checksum([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("checksum(\"123456789\") = %#08x, want 0xe3069283 (CRC-32C)", got)
	}
	text := fmt.Sprintf("crc32c(\"123456789\") = %08x\ncrc32c(floats.golden) = %08x\ncrc32c(empty) = %08x\n",
		checksum([]byte("123456789")), checksum(floatBytes(goldenParams)), checksum(nil))
	checkGolden(t, "crc32c", []byte(text))
}

// TestGoldenChunks pins how a payload is cut into Chunk messages (as the server streams a
// task's parameters), and reassembles the golden chunks.
func TestGoldenChunks(t *testing.T) {
	payload := floatBytes(goldenParams)
	var got []*shoalv1.Chunk
	if err := chunks(goldenHeader.proto(), payload, goldenChunkSize, func(c *shoalv1.Chunk) error {
		got = append(got, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := (len(payload) + goldenChunkSize - 1) / goldenChunkSize; len(got) != want {
		t.Fatalf("%d chunks, want %d", len(got), want)
	}
	asm, err := newAssembly(goldenHeader, &shoalv1.Payload{Size: uint64(len(payload)), Crc32C: checksum(payload)},
		uint64(len(payload)), goldenChunkSize, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range got {
		msg := &shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Chunk{Chunk: c}}
		want := checkGolden(t, fmt.Sprintf("chunk-%d", i), goldenMarshal(t, msg))
		var dec shoalv1.ServerMsg
		if err := proto.Unmarshal(want, &dec); err != nil {
			t.Fatalf("golden chunk %d: %v", i, err)
		}
		if re := goldenMarshal(t, &dec); !bytes.Equal(re, want) {
			t.Fatalf("golden chunk %d re-encodes differently: %s", i, golden.Diff(re, want))
		}
		done, err := asm.add(dec.GetChunk())
		if err != nil {
			t.Fatalf("golden chunk %d: %v", i, err)
		}
		if done != (i == len(got)-1) {
			t.Fatalf("golden chunk %d: payload complete = %v", i, done)
		}
	}
	if !bytes.Equal(asm.bytes(), payload) {
		t.Fatalf("golden chunks reassemble to %x, want %x", asm.bytes(), payload)
	}
}

// TestGoldenMessages pins one example of every top-level message, in its ClientMsg or
// ServerMsg envelope, with the fields the runtime sets (see client.go, session.go, server.go).
func TestGoldenMessages(t *testing.T) {
	params := floatBytes(goldenParams)
	paramsPayload := &shoalv1.Payload{Size: uint64(len(params)), Crc32C: checksum(params)}
	exchange := []byte("an opaque secure-sum message")
	exchangeHdr := header{run: goldenHeader.run, round: 3, stage: 2, taskID: 43}
	fitAnswer := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0} // the fit answer: float32s 1, -2
	fit := fitConfigProto(fl.FitConfig{Epochs: 2, BatchSize: 32, LR: 0.05, Momentum: 0.9, WeightDecay: 1e-4,
		ProxMu: 0.01, ClipNorm: 1.5, PerLayerClip: true, LocalNoiseStd: 0.25, UnitWeights: true})
	task := func(h header, kind shoalv1.TaskKind, secure bool, fit *shoalv1.FitConfig, p *shoalv1.Payload) *shoalv1.ServerMsg {
		return &shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Task{Task: &shoalv1.Task{
			Header: h.proto(), Kind: kind, ClientId: 2, Fit: fit, Secure: secure, Payload: p}}}
	}
	result := func(r *shoalv1.Result) *shoalv1.ClientMsg {
		return &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Result{Result: r}}
	}
	msgs := []struct {
		name string
		msg  proto.Message
	}{
		{"client-hello", &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Hello{Hello: &shoalv1.Hello{
			ProtocolVersion: ProtocolVersion, Name: "client-007",
			Model: (&ModelSpec{Arch: "logreg", Input: [3]int{1, 1, 30}, Classes: []string{"benign"}}).proto()}}}},
		{"server-welcome", &shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Welcome{Welcome: &shoalv1.Welcome{
			ProtocolVersion: ProtocolVersion, RunId: goldenHeader.run, ClientName: "client-007", ChunkSize: DefaultChunkSize,
			MaxResultPayload: 64 << 20, HeartbeatMillis: 5000, SecureSum: "secagg",
			SecureSumParams: []byte(`{"bits":16}`),
			Model: (&ModelSpec{Arch: "logreg", Input: [3]int{1, 1, 30}, LayerSizes: []int{62},
				Classes: []string{"benign", "malignant"}}).proto()}}}},
		{"server-task-fit", task(goldenHeader, shoalv1.TaskKind_TASK_KIND_FIT, false, fit, paramsPayload)},
		{"server-task-fit-secure", task(goldenHeader, shoalv1.TaskKind_TASK_KIND_FIT, true, fit, paramsPayload)},
		{"server-task-evaluate", task(goldenHeader, shoalv1.TaskKind_TASK_KIND_EVALUATE, false, nil, paramsPayload)},
		{"server-task-exchange", task(exchangeHdr, shoalv1.TaskKind_TASK_KIND_EXCHANGE, false, nil,
			&shoalv1.Payload{Size: uint64(len(exchange)), Crc32C: checksum(exchange)})},
		{"client-result-fit", result(&shoalv1.Result{Header: goldenHeader.proto(), Kind: shoalv1.TaskKind_TASK_KIND_FIT,
			NumExamples: 600, Loss: 0.6931471805599453, Unclipped: 2.5,
			Payload: &shoalv1.Payload{Size: uint64(len(fitAnswer)), Crc32C: checksum(fitAnswer)}})},
		// A secure fit and an evaluation answer with an empty (but present) payload.
		{"client-result-fit-secure", result(&shoalv1.Result{Header: goldenHeader.proto(), Kind: shoalv1.TaskKind_TASK_KIND_FIT,
			NumExamples: 600, Loss: 0.6931471805599453, Unclipped: 2.5, Payload: &shoalv1.Payload{}})},
		{"client-result-evaluate", result(&shoalv1.Result{Header: goldenHeader.proto(), Kind: shoalv1.TaskKind_TASK_KIND_EVALUATE,
			NumExamples: 1000, Loss: 0.25, Accuracy: 0.9375, Payload: &shoalv1.Payload{}})},
		{"client-result-exchange", result(&shoalv1.Result{Header: exchangeHdr.proto(), Kind: shoalv1.TaskKind_TASK_KIND_EXCHANGE,
			Payload: &shoalv1.Payload{Size: uint64(len(exchange)), Crc32C: checksum(exchange)}})},
		{"client-result-error", result(&shoalv1.Result{Header: goldenHeader.proto(), Kind: shoalv1.TaskKind_TASK_KIND_FIT,
			Error: "fit configuration: epochs must be positive"})},
		{"client-heartbeat", &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Heartbeat{Heartbeat: &shoalv1.Heartbeat{Seq: 300}}}},
		{"server-heartbeat", &shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Heartbeat{Heartbeat: &shoalv1.Heartbeat{Seq: 300}}}},
		{"server-cancel", &shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Cancel{Cancel: &shoalv1.Cancel{
			Header: goldenHeader.proto(), Reason: "round over"}}}},
		{"server-goodbye", &shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Goodbye{Goodbye: &shoalv1.Goodbye{
			Reason: "run complete", RunComplete: true}}}},
	}
	for _, m := range msgs {
		t.Run(m.name, func(t *testing.T) {
			want := checkGolden(t, m.name, goldenMarshal(t, m.msg))
			dec := m.msg.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(want, dec); err != nil {
				t.Fatalf("golden %s does not decode: %v", m.name, err)
			}
			if !proto.Equal(dec, m.msg) {
				t.Fatalf("golden %s decodes to %v, want %v", m.name, dec, m.msg)
			}
			if re := goldenMarshal(t, dec); !bytes.Equal(re, want) {
				t.Fatalf("golden %s re-encodes differently: %s", m.name, golden.Diff(re, want))
			}
		})
	}
}
