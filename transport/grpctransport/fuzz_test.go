package grpctransport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	shoalv1 "shoal/proto/shoal/v1"
)

// fuzzTask is the one task outstanding on the fuzzed session: a fit answer of exactly
// fuzzUpdateBytes bytes, in chunks of at most fuzzChunk.
var fuzzHeader = header{run: "fuzz", round: 3, stage: 0, taskID: 42}

const (
	fuzzUpdateBytes = 40
	fuzzChunk       = 16
)

// frames encodes messages as a stream of uvarint-length-prefixed protobufs: the fuzz input.
func frames(msgs ...*shoalv1.ClientMsg) []byte {
	var out []byte
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return out
}

func fuzzSeeds() map[string][]byte {
	h := fuzzHeader.proto()
	good := bytes.Repeat([]byte{7}, fuzzUpdateBytes)
	res := func(size uint64, crc uint32) *shoalv1.ClientMsg {
		return &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Result{Result: &shoalv1.Result{Header: h, Kind: shoalv1.TaskKind_TASK_KIND_FIT,
			NumExamples: 3, Payload: &shoalv1.Payload{Size: size, Crc32C: crc}}}}
	}
	ch := func(off int, data []byte) *shoalv1.ClientMsg {
		return &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Chunk{Chunk: &shoalv1.Chunk{Header: h, Offset: uint64(off), Data: data}}}
	}
	answer := []*shoalv1.ClientMsg{res(fuzzUpdateBytes, checksum(good)), ch(0, good[:16]), ch(16, good[16:32]), ch(32, good[32:])}
	return map[string][]byte{
		"good":        frames(answer...),
		"replayed":    frames(append(answer, answer...)...),
		"bad-crc":     frames(res(fuzzUpdateBytes, 1), ch(0, good[:16]), ch(16, good[16:32]), ch(32, good[32:])),
		"oversized":   frames(res(1<<40, 0)),
		"gap":         frames(res(fuzzUpdateBytes, checksum(good)), ch(16, good[16:32])),
		"big-chunk":   frames(res(fuzzUpdateBytes, checksum(good)), ch(0, good)),
		"heartbeat":   frames(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Heartbeat{Heartbeat: &shoalv1.Heartbeat{Seq: 1}}}),
		"client-fail": frames(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Result{Result: &shoalv1.Result{Header: h, Kind: shoalv1.TaskKind_TASK_KIND_FIT, Error: "oom"}}}),
	}
}

// FuzzClientMessages feeds arbitrary message sequences to a server session holding one fit
// task. Whatever arrives, the session never panics, answers the task at most once, never
// accepts a payload that is not exactly the announced, checksummed update, and never buffers
// more than the task allows.
func FuzzClientMessages(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, n := feedSession(t, in)
		if n != 1 {
			t.Fatalf("task answered %d times", n)
		}
		if a.err == nil && a.payload != nil {
			if len(a.payload) != fuzzUpdateBytes || checksum(a.payload) != a.res.GetPayload().GetCrc32C() {
				t.Fatalf("accepted a payload of %d bytes failing its announcement", len(a.payload))
			}
		}
		if a.err == nil && a.payload == nil {
			t.Fatal("a fit answer without its update was accepted")
		}
	})
}

// feedSession plays the framed messages in to a session holding one fit task and returns the
// task's answer and how many answers there were.
func feedSession(t *testing.T, in []byte) (answer, int) {
	srv := &Server{cfg: ServerConfig{RunID: "fuzz", ChunkSize: fuzzChunk, MaxResultPayload: 64}, log: slog.New(slog.DiscardHandler)}
	ss := &session{srv: srv, name: "f", out: make(chan outbound, sendQueue), done: make(chan struct{}), tasks: map[uint64]*task{},
		log: srv.log}
	answers := make(chan answer, 2)
	tk := &task{hdr: fuzzHeader, kind: shoalv1.TaskKind_TASK_KIND_FIT, answers: answers, exact: fuzzUpdateBytes, sess: ss}
	ss.tasks[fuzzHeader.taskID] = tk
	for len(in) > 0 {
		n, k := binary.Uvarint(in)
		if k <= 0 || n > uint64(len(in)-k) {
			break
		}
		var m shoalv1.ClientMsg
		err := proto.Unmarshal(in[k:k+int(n)], &m)
		in = in[k+int(n):]
		if err != nil {
			continue // gRPC would have refused it before the session saw it
		}
		if err := ss.handle(&m); err != nil {
			ss.close(err)
			break
		}
		if ss.asm != nil && uint64(len(ss.asm.buf)) > max(fuzzUpdateBytes, 64) {
			t.Fatalf("session buffers %d bytes", len(ss.asm.buf))
		}
	}
	ss.close(fmt.Errorf("end of input"))
	n := len(answers)
	return <-answers, n
}

// The seed scenarios end as they must: only the well-formed answer is accepted, once.
func TestSessionSeedScenarios(t *testing.T) {
	for name, seed := range fuzzSeeds() {
		a, n := feedSession(t, seed)
		accepted := a.err == nil
		if n != 1 || accepted != (name == "good" || name == "replayed") {
			t.Errorf("%s: %d answers, accepted %v (%v)", name, n, accepted, a.err)
		}
		if accepted && !bytes.Equal(a.payload, bytes.Repeat([]byte{7}, fuzzUpdateBytes)) {
			t.Errorf("%s: payload %v", name, a.payload)
		}
	}
}

// FuzzAssembly: chunks of any size, offset and header either complete the announced payload
// exactly (bytes and checksum) or are refused; nothing is buffered beyond the announcement.
func FuzzAssembly(f *testing.F) {
	f.Add(uint16(10), []byte("0123456789"), uint8(4), false)
	f.Add(uint16(10), []byte("0123456789"), uint8(4), true)
	f.Add(uint16(3), []byte("abcdef"), uint8(2), false)
	f.Add(uint16(0), []byte{}, uint8(1), false)
	f.Fuzz(func(t *testing.T, size uint16, data []byte, step uint8, corrupt bool) {
		if step == 0 {
			step = 1
		}
		want := data[:min(int(size), len(data))]
		crc := checksum(want)
		if corrupt {
			crc ^= 0x5a
		}
		h := header{run: "r", round: 1, taskID: 9}
		a, err := newAssembly(h, &shoalv1.Payload{Size: uint64(size), Crc32C: crc}, 1<<12, 8, size%2 == 0)
		if err != nil {
			if uint64(size) <= 1<<12 {
				t.Fatalf("announcement within the limit refused: %v", err)
			}
			return
		}
		off := 0
		for off < len(data) {
			end := min(off+int(step), len(data))
			done, err := a.add(&shoalv1.Chunk{Header: h.proto(), Offset: uint64(off), Data: data[off:end]})
			if err != nil {
				return // refused: fine, as long as nothing below was accepted
			}
			if len(a.buf) > int(size) {
				t.Fatalf("buffered %d bytes of a %d-byte payload", len(a.buf), size)
			}
			off = end
			if done {
				if !bytes.Equal(a.bytes(), want) || corrupt {
					t.Fatalf("completed with %q (corrupt %v), want %q", a.bytes(), corrupt, want)
				}
				return
			}
		}
	})
}

// TestWriteFuzzCorpus keeps testdata/fuzz/FuzzClientMessages in sync with fuzzSeeds when
// SHOAL_WRITE_CORPUS is set; otherwise it checks the committed corpus is there.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzClientMessages")
	if os.Getenv("SHOAL_WRITE_CORPUS") == "" {
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < len(fuzzSeeds()) {
			t.Fatalf("seed corpus %s missing or incomplete (regenerate with SHOAL_WRITE_CORPUS=1): %v", dir, err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, seed := range fuzzSeeds() {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
