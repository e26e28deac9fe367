package secagg

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestInteraction replays the protocol transcripts in testdata/interaction, one file per
// scenario, in the style of etcd raft's InteractionEnv: each command drives the Server and Client
// state machines one step and prints what went over the wire. Regenerate the expected output
// with
//
//	go test ./secagg -run Interaction -rewrite
//
// and read the diff: the transcripts are the specification of the protocol under dropouts.
//
// Commands (arguments in brackets are optional):
//
//	setup clients=n threshold=t [dim=4] [bits=8] [graph=complete|harary] [degree=k]
//	      [malicious] [round=1] [seed=1]
//	    A new round: the server and n clients, each client with seeded randomness (and, with
//	    malicious, a seeded Ed25519 key: the malicious-server variant).
//	input client=i values=(v1,...,v_dim) [weight=w]
//	    Sets client i's encoded input (integers of `bits` bits); client=(i,j,...) sets several.
//	    The body may instead hold one line per client: "i: v1 ... v_dim [w=weight]".
//	drop client=i [stage=S]
//	    Client i stops answering: now, or from stage S on (it never sends its message of S).
//	rejoin client=i
//	    A dropped client answers again (a straggler): its messages reach the server late.
//	deliver stage=advertise|share|masked|consistency|unmask [advance=false]
//	    The server's messages of stage S go to the clients, their replies to the server; then
//	    the server closes the stage (Server.Advance) unless advance=false.
//	advance
//	    The server closes its current stage (the engine's timeout fired).
//	replay from=i type=T [via=j] [round=r]
//	    Client i's last message of type T is sent to the server again (over client j's
//	    connection; with its header rewritten to round r).
//	replay to=i type=T [round=r]
//	    The server's last message of type T to client i is delivered to it again.
//	tamper to=i survivors=(...)
//	    A malicious server rewrites the pending ConsistencyRequest or UnmaskRequest to client i.
//	tamper from=i share-of=j
//	    Client i's next UnmaskShares carries a corrupted share about client j.
//	forge to=i type=ConsistencyRequest|UnmaskRequest survivors=(...) [sigs=(...)]
//	    A malicious server sends client i an extra request now; sigs attaches the ConsistencySig
//	    signatures those clients sent.
//	shares
//	    Which clients revealed which shares (b_u or s_u^SK) about whom, over all UnmaskShares
//	    on the wire.
//	status
//	    The stage of the server and of every client.
//	result
//	    The server's result, checked against the plain sum of the survivors' inputs (and that
//	    the server never saw t shares of both b_u and s_u^SK of one client); a mismatch fails.
func TestInteraction(t *testing.T) {
	datadriven.Walk(t, "testdata/interaction", func(t *testing.T, path string) {
		e := &interactionEnv{}
		datadriven.RunTest(t, path, e.handle)
	})
}

// interactionEnv is one round driven by hand.
type interactionEnv struct {
	out      strings.Builder
	cfg      Config
	srv      *Server
	clients  []*Client
	sks      []ed25519.PrivateKey
	inputs   [][]uint32           // encoded inputs, Dim entries then the weight; nil if unset
	gone     []bool               // stopped answering
	dropAt   map[uint32]Stage     // scheduled drops
	pending  []Outgoing           // the server's messages for its current stage
	sentBy   []map[MsgType][]byte // last message of each type sent by each client
	sentTo   []map[MsgType][]byte // last message of each type the server sent each client
	masked   []bool               // the server accepted this client's MaskedInput
	revealed []map[byte][]uint32  // about u: kind -> clients that revealed that share of u
	corrupt  map[uint32][]uint32  // client -> subjects whose share it corrupts in UnmaskShares
}

var stageByName = map[string]Stage{"advertise": StageAdvertise, "share": StageShare, "masked": StageMasked,
	"consistency": StageConsistency, "unmask": StageUnmask}

// sentInStage is the message a client sends in each stage.
var sentInStage = map[Stage]MsgType{StageAdvertise: MsgAdvertiseKeys, StageShare: MsgShareKeys,
	StageMasked: MsgMaskedInput, StageConsistency: MsgConsistencySig, StageUnmask: MsgUnmaskShares}

// receivedInStage is the server message that opens each stage at a client.
var receivedInStage = map[Stage]MsgType{StageShare: MsgKeyList, StageMasked: MsgShares,
	StageConsistency: MsgConsistencyRequest, StageUnmask: MsgUnmaskRequest}

func (e *interactionEnv) printf(format string, a ...any) {
	fmt.Fprintf(&e.out, format, a...)
	e.out.WriteByte('\n')
}

func (e *interactionEnv) handle(t *testing.T, td *datadriven.TestData) string {
	e.out.Reset()
	if td.Cmd != "setup" && e.srv == nil {
		td.Fatalf(t, "%s before a successful setup", td.Cmd)
	}
	switch td.Cmd {
	case "setup":
		e.setup(t, td)
	case "input":
		e.input(t, td)
	case "drop":
		e.drop(t, td)
	case "rejoin":
		id := e.scanClient(t, td, "client")
		e.gone[id] = false
		delete(e.dropAt, id)
		e.printf("c%d answers again; the server sees its messages late", id)
	case "deliver":
		e.deliver(t, td)
	case "advance":
		e.advance()
	case "replay":
		e.replay(t, td)
	case "tamper":
		e.tamper(t, td)
	case "forge":
		e.forge(t, td)
	case "shares":
		e.shares()
	case "status":
		e.status()
	case "result":
		e.result(t, td)
	default:
		td.Fatalf(t, "unknown command %q", td.Cmd)
	}
	return e.out.String()
}

// ---- arguments ----

func scanIDs(t *testing.T, td *datadriven.TestData, key string) []uint32 {
	t.Helper()
	arg, ok := td.Arg(key)
	if !ok {
		td.Fatalf(t, "missing argument %s", key)
	}
	var ids []uint32
	for _, v := range arg.Vals {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		id, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			td.Fatalf(t, "%s: %v", key, err)
		}
		ids = append(ids, uint32(id))
	}
	slices.Sort(ids)
	return ids
}

func (e *interactionEnv) scanClient(t *testing.T, td *datadriven.TestData, key string) uint32 {
	t.Helper()
	var id int
	td.ScanArgs(t, key, &id)
	if id < 0 || id >= e.cfg.Clients {
		td.Fatalf(t, "%s=%d: no such client", key, id)
	}
	return uint32(id)
}

func scanStage(t *testing.T, td *datadriven.TestData) (Stage, bool) {
	t.Helper()
	var name string
	if !td.MaybeScanArgs(t, "stage", &name) {
		return 0, false
	}
	st, ok := stageByName[name]
	if !ok {
		td.Fatalf(t, "unknown stage %q", name)
	}
	return st, true
}

func scanType(t *testing.T, td *datadriven.TestData) MsgType {
	t.Helper()
	var name string
	td.ScanArgs(t, "type", &name)
	for typ := MsgAdvertiseKeys; typ <= MsgUnmaskShares; typ++ {
		if typ.String() == name {
			return typ
		}
	}
	td.Fatalf(t, "unknown message type %q", name)
	return 0
}

// ---- formatting ----

func fmtIDs(ids []uint32) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(id), 10))
	}
	b.WriteByte('}')
	return b.String()
}

func fmtVals(vals []uint32) string {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = strconv.FormatUint(uint64(v), 10)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func members(set []bool) []uint32 {
	var ids []uint32
	for u, in := range set {
		if in {
			ids = append(ids, uint32(u))
		}
	}
	return ids
}

// describe summarises a message: type, size and the protocol content that matters.
func describe(data []byte) string {
	m, err := decode(data)
	if err != nil {
		return fmt.Sprintf("%d B, malformed: %v", len(data), err)
	}
	var s string
	switch m.Type {
	case MsgAdvertiseKeys:
		s = "c_u^PK, s_u^PK, commitment to b_u"
		if m.sig != nil {
			s += ", signed"
		}
	case MsgKeyList:
		ids := make([]uint32, len(m.keys))
		for i, k := range m.keys {
			ids[i] = k.id
		}
		s = "keys of " + fmtIDs(ids)
		if m.hasSigs {
			s += ", signed"
		}
	case MsgShareKeys:
		s = "encrypted shares for " + fmtIDs(cipherIDs(m.cts))
	case MsgShares:
		s = "encrypted shares from " + fmtIDs(cipherIDs(m.cts))
	case MsgMaskedInput:
		s = fmt.Sprintf("y_u, %d entries x %d bits", m.entries, m.ringBits)
	case MsgConsistencyRequest:
		s = "sign U3 = " + fmtIDs(m.ids)
	case MsgConsistencySig:
		s = "signature of U3"
	case MsgUnmaskRequest:
		s = "U3 = " + fmtIDs(m.ids)
		if m.hasSigs {
			ids := make([]uint32, len(m.sigs))
			for i, sg := range m.sigs {
				ids[i] = sg.id
			}
			s += ", signatures of " + fmtIDs(ids)
		}
	case MsgUnmaskShares:
		var b, sk []uint32
		for _, sh := range m.shares {
			if sh.kind == shareSelfMask {
				b = append(b, sh.about)
			} else {
				sk = append(sk, sh.about)
			}
		}
		s = fmt.Sprintf("b_u shares of %s, s_u^SK shares of %s", fmtIDs(b), fmtIDs(sk))
	}
	if m.Recipient == BroadcastID {
		s += " (broadcast)"
	}
	return fmt.Sprintf("%v %d B: %s", m.Type, len(data), s)
}

func cipherIDs(cts []cipherEntry) []uint32 {
	ids := make([]uint32, len(cts))
	for i, c := range cts {
		ids[i] = c.id
	}
	return ids
}

// ---- commands ----

func (e *interactionEnv) setup(t *testing.T, td *datadriven.TestData) {
	n, dim, bits, threshold, degree, round, seed := 0, 4, 8, 0, 0, uint64(1), uint64(1)
	graph := "complete"
	td.ScanArgs(t, "clients", &n)
	td.ScanArgs(t, "threshold", &threshold)
	td.MaybeScanArgs(t, "dim", &dim)
	td.MaybeScanArgs(t, "bits", &bits)
	td.MaybeScanArgs(t, "graph", &graph)
	td.MaybeScanArgs(t, "degree", &degree)
	td.MaybeScanArgs(t, "round", &round)
	td.MaybeScanArgs(t, "seed", &seed)
	cfg := Config{Round: round, Clients: n, Dim: dim, Bits: bits, ClipRange: 1, MaxWeight: 1,
		Threshold: threshold, GraphSeed: [32]byte{byte(seed), byte(seed >> 8), 's', 'e', 't', 'u', 'p'}}
	switch graph {
	case "complete":
		cfg.Graph = GraphComplete
		if degree == 0 {
			degree = n - 1
		}
	case "harary":
		cfg.Graph = GraphHarary
	default:
		td.Fatalf(t, "unknown graph %q", graph)
	}
	cfg.Degree = degree
	var sks []ed25519.PrivateKey
	if td.HasArg("malicious") {
		// The PKI: one seeded Ed25519 key per client.
		cfg.VerifyKeys = make([]ed25519.PublicKey, n)
		for i := range n {
			var s [32]byte
			binary.BigEndian.PutUint64(s[:], seed)
			binary.BigEndian.PutUint32(s[8:], uint32(i))
			sks = append(sks, ed25519.NewKeyFromSeed(s[:]))
			cfg.VerifyKeys[i] = sks[i].Public().(ed25519.PublicKey)
		}
	}
	*e = interactionEnv{cfg: cfg, sks: sks}
	srv, err := NewServer(cfg)
	if err != nil {
		e.printf("error: %v", err)
		return
	}
	rng := seeded(seed)
	for id := range uint32(n) {
		var opts []ClientOption
		if cfg.Malicious() {
			opts = append(opts, WithSigningKey(e.sks[id]))
		}
		c, err := NewClient(cfg, id, rng(id), opts...)
		if err != nil {
			td.Fatalf(t, "client %d: %v", id, err)
		}
		e.clients = append(e.clients, c)
	}
	e.srv = srv
	e.inputs = make([][]uint32, n)
	e.gone = make([]bool, n)
	e.masked = make([]bool, n)
	e.dropAt = map[uint32]Stage{}
	e.corrupt = map[uint32][]uint32{}
	e.sentBy = make([]map[MsgType][]byte, n)
	e.sentTo = make([]map[MsgType][]byte, n)
	e.revealed = make([]map[byte][]uint32, n)
	for i := range n {
		e.sentBy[i], e.sentTo[i], e.revealed[i] = map[MsgType][]byte{}, map[MsgType][]byte{}, map[byte][]uint32{}
	}
	variant := "semi-honest server"
	if cfg.Malicious() {
		variant = "malicious server (signed keys, consistency check)"
	}
	g := fmt.Sprintf("complete graph (degree %d)", degree)
	if cfg.Graph == GraphHarary {
		g = fmt.Sprintf("Harary graph H(%d,%d)", degree, n)
	}
	e.printf("round %d: %d clients, dim %d + weight, %d-bit inputs in Z_2^%d, %s, threshold t=%d, %s",
		round, n, dim, bits, cfg.RingBits(), g, threshold, variant)
	if !srv.g.complete {
		for u := range uint32(n) {
			e.printf("c%d neighbours %s", u, fmtIDs(srv.neighbours[u]))
		}
	}
}

func (e *interactionEnv) setInput(t *testing.T, td *datadriven.TestData, id uint32, vals []uint32, weight uint32) {
	t.Helper()
	if len(vals) != e.cfg.Dim {
		td.Fatalf(t, "client %d: %d values, dim is %d", id, len(vals), e.cfg.Dim)
	}
	enc := append(slices.Clone(vals), weight)
	if err := e.clients[id].SetEncodedInput(enc); err != nil {
		e.printf("c%d: error: %v", id, err)
		return
	}
	e.inputs[id] = enc
	e.printf("c%d: x = %s, weight %d", id, fmtVals(vals), weight)
}

func (e *interactionEnv) input(t *testing.T, td *datadriven.TestData) {
	if td.HasArg("client") {
		ids := scanIDs(t, td, "client")
		arg, ok := td.Arg("values")
		if !ok {
			td.Fatalf(t, "input needs values=")
		}
		var vals []uint32
		for _, v := range arg.Vals {
			x, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				td.Fatalf(t, "values: %v", err)
			}
			vals = append(vals, uint32(x))
		}
		w := 1
		td.MaybeScanArgs(t, "weight", &w)
		for _, id := range ids {
			if int(id) >= e.cfg.Clients {
				td.Fatalf(t, "no client %d", id)
			}
			e.setInput(t, td, id, vals, uint32(w))
		}
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(td.Input), "\n") {
		head, rest, ok := strings.Cut(line, ":")
		id, err := strconv.Atoi(strings.TrimSpace(head))
		if !ok || err != nil || id < 0 || id >= e.cfg.Clients {
			td.Fatalf(t, "input line %q: want \"client: v1 ... vd [w=weight]\"", line)
		}
		var vals []uint32
		w := uint64(1)
		for _, f := range strings.Fields(rest) {
			if ws, isW := strings.CutPrefix(f, "w="); isW {
				if w, err = strconv.ParseUint(ws, 10, 32); err != nil {
					td.Fatalf(t, "input line %q: %v", line, err)
				}
				continue
			}
			x, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				td.Fatalf(t, "input line %q: %v", line, err)
			}
			vals = append(vals, uint32(x))
		}
		e.setInput(t, td, uint32(id), vals, uint32(w))
	}
}

func (e *interactionEnv) drop(t *testing.T, td *datadriven.TestData) {
	id := e.scanClient(t, td, "client")
	if st, ok := scanStage(t, td); ok {
		e.dropAt[id] = st
		e.printf("c%d will drop at stage %v: it never sends its %v", id, st, sentInStage[st])
		return
	}
	e.gone[id] = true
	st := e.srv.Stage()
	if st < StageDone {
		e.printf("c%d drops now (server collecting %v): it sends no %v and nothing after", id, st, sentInStage[st])
	} else {
		e.printf("c%d drops now (server stage %v)", id, st)
	}
}

// silent reports whether client id does not answer in stage st, and tells the server.
func (e *interactionEnv) silent(id uint32, st Stage) bool {
	if at, ok := e.dropAt[id]; ok && at == st {
		e.gone[id] = true
	}
	if !e.gone[id] {
		return false
	}
	e.printf("  c%d: gone, sends no %v (engine times out: MarkDropped(%d))", id, sentInStage[st], id)
	e.srv.MarkDropped(id)
	return true
}

func (e *interactionEnv) deliver(t *testing.T, td *datadriven.TestData) {
	st, ok := scanStage(t, td)
	if !ok {
		td.Fatalf(t, "deliver needs stage=")
	}
	if e.srv.Stage() != st {
		td.Fatalf(t, "server is collecting %v, not %v", e.srv.Stage(), st)
	}
	if st == StageAdvertise {
		for id := range uint32(e.cfg.Clients) {
			if e.silent(id, st) {
				continue
			}
			msg, err := e.clients[id].Start()
			if err != nil {
				e.printf("  c%d: error: %v", id, err)
				continue
			}
			e.toServer(id, id, msg, true)
		}
	} else {
		out := e.pending
		e.pending = nil
		for _, o := range out {
			if h, _ := Peek(o.Data); h.Type != receivedInStage[st] {
				td.Fatalf(t, "pending %v for stage %v", h.Type, st)
			}
			e.printf("server -> c%d  %s", o.To, describe(o.Data))
			e.toClient(o.To, o.Data, st)
		}
	}
	adv := true
	td.MaybeScanArgs(t, "advance", &adv)
	if adv {
		e.advance()
	}
}

// toClient hands data, a server message of stage st, to client id unless it is gone.
func (e *interactionEnv) toClient(id uint32, data []byte, st Stage) {
	h, _ := Peek(data)
	e.sentTo[id][h.Type] = data
	if e.silent(id, st) {
		return
	}
	e.handleAt(id, data)
}

// handleAt runs client id on a server message and forwards its reply to the server. A client
// that aborts has left the round, and the engine tells the server so.
func (e *interactionEnv) handleAt(id uint32, data []byte) {
	reply, err := e.clients[id].Handle(data)
	if err != nil {
		e.printf("  c%d: %v", id, err)
		if errors.Is(err, ErrAborted) {
			e.gone[id] = true
			e.srv.MarkDropped(id)
			e.printf("  (engine: c%d left the round, MarkDropped(%d))", id, id)
		}
	}
	if reply != nil {
		e.toServer(id, id, reply, true)
	}
}

// toServer sends client id's message to the server over client via's connection; echo prints
// and records it as a fresh message (not a replay).
func (e *interactionEnv) toServer(id, via uint32, msg []byte, echo bool) {
	h, err := Peek(msg)
	if err == nil && h.Type == MsgUnmaskShares && len(e.corrupt[id]) > 0 {
		m, _ := decode(msg)
		for i := range m.shares {
			if slices.Contains(e.corrupt[id], m.shares[i].about) {
				// A middle chunk: a small error in chunk 0 can land on the low bits of a
				// masking key that X25519 clamps away, leaving the key unchanged.
				m.shares[i].chunks[2] = fieldAdd(m.shares[i].chunks[2], 1)
				e.printf("  (c%d corrupts its share about c%d)", id, m.shares[i].about)
			}
		}
		msg = m.encode()
		delete(e.corrupt, id)
	}
	if echo {
		e.sentBy[id][h.Type] = msg
		e.printf("  c%d -> server  %s", id, describe(msg))
	}
	if h.Type == MsgUnmaskShares {
		m, _ := decode(msg)
		for _, s := range m.shares {
			if rv := e.revealed[s.about]; !slices.Contains(rv[s.kind], id) {
				rv[s.kind] = append(rv[s.kind], id)
				slices.Sort(rv[s.kind])
			}
		}
	}
	if err := e.srv.Receive(via, msg); err != nil {
		e.printf("  server rejects: %v", err)
		return
	}
	if h.Type == MsgMaskedInput {
		e.masked[id] = true
	}
}

func (e *interactionEnv) advance() {
	s := e.srv
	st := s.Stage()
	if st >= StageDone {
		_, err := s.Advance()
		e.printf("%v", err)
		return
	}
	if !s.Ready() {
		e.printf("server: no answer from %s, closes stage %v on timeout", fmtIDs(s.Waiting()), st)
	}
	before := members(s.eligible)
	out, err := s.Advance()
	answered := members(s.eligible)
	var missing []uint32
	for _, u := range before {
		if !slices.Contains(answered, u) {
			missing = append(missing, u)
		}
	}
	set := map[Stage]string{StageAdvertise: "U1", StageShare: "U2", StageMasked: "U3", StageConsistency: "U4", StageUnmask: "U5"}[st]
	line := fmt.Sprintf("server closes %v: %s = %s", st, set, fmtIDs(answered))
	if len(missing) > 0 {
		line += fmt.Sprintf(", no %v from %s", sentInStage[st], fmtIDs(missing))
	}
	e.printf("%s", line)
	if err != nil {
		e.printf("%v", err)
		e.pending = nil
		return
	}
	if st == StageUnmask {
		var dropped []uint32
		for u := range s.inU2 {
			if s.inU2[u] && !s.inU3[u] {
				dropped = append(dropped, uint32(u))
			}
		}
		e.printf("server: reconstructs b_u of U3 = %s and s_u^SK of U2\\U3 = %s, removes their masks: sum ready",
			fmtIDs(members(s.inU3)), fmtIDs(dropped))
	}
	e.pending = out
}

func (e *interactionEnv) replay(t *testing.T, td *datadriven.TestData) {
	typ := scanType(t, td)
	var msg []byte
	rewrite := func() {
		var r uint64
		if td.MaybeScanArgs(t, "round", &r) {
			msg = bytes.Clone(msg)
			binary.BigEndian.PutUint64(msg[2:], r)
		}
	}
	switch {
	case td.HasArg("from"):
		id := e.scanClient(t, td, "from")
		via := id
		if td.HasArg("via") {
			via = e.scanClient(t, td, "via")
		}
		if msg = e.sentBy[id][typ]; msg == nil {
			td.Fatalf(t, "c%d never sent %v", id, typ)
		}
		rewrite()
		h, _ := Peek(msg)
		line := fmt.Sprintf("replay: c%d's %v of round %d to the server again", id, typ, h.Round)
		if via != id {
			line += fmt.Sprintf(", over c%d's connection", via)
		}
		e.printf("%s", line)
		e.toServer(id, via, msg, false)
	case td.HasArg("to"):
		id := e.scanClient(t, td, "to")
		if msg = e.sentTo[id][typ]; msg == nil {
			td.Fatalf(t, "c%d never received %v", id, typ)
		}
		rewrite()
		h, _ := Peek(msg)
		e.printf("replay: the server's %v of round %d to c%d again", typ, h.Round, id)
		e.replayToClient(id, msg)
	default:
		td.Fatalf(t, "replay needs from= or to=")
	}
}

// replayToClient delivers an extra server message to client id, whatever its stage.
func (e *interactionEnv) replayToClient(id uint32, msg []byte) {
	if e.gone[id] {
		e.printf("  c%d: gone, no answer", id)
		return
	}
	e.handleAt(id, msg)
}

func (e *interactionEnv) tamper(t *testing.T, td *datadriven.TestData) {
	switch {
	case td.HasArg("from"):
		id := e.scanClient(t, td, "from")
		about := e.scanClient(t, td, "share-of")
		e.corrupt[id] = append(e.corrupt[id], about)
		e.printf("c%d will reveal a corrupted share of c%d's secret", id, about)
	case td.HasArg("to"):
		id := e.scanClient(t, td, "to")
		ids := scanIDs(t, td, "survivors")
		for i, o := range e.pending {
			if o.To != id {
				continue
			}
			m, err := decode(o.Data)
			if err != nil || (m.Type != MsgConsistencyRequest && m.Type != MsgUnmaskRequest) {
				td.Fatalf(t, "pending message to c%d is not a survivor list", id)
			}
			was := m.ids
			m.ids, m.Recipient = ids, id
			e.pending[i].Data = m.encode()
			e.printf("server (malicious) rewrites its %v to c%d: U3 = %s instead of %s", m.Type, id, fmtIDs(ids), fmtIDs(was))
			return
		}
		td.Fatalf(t, "no pending message to c%d", id)
	default:
		td.Fatalf(t, "tamper needs from= or to=")
	}
}

func (e *interactionEnv) forge(t *testing.T, td *datadriven.TestData) {
	id := e.scanClient(t, td, "to")
	typ := scanType(t, td)
	if typ != MsgConsistencyRequest && typ != MsgUnmaskRequest {
		td.Fatalf(t, "forge supports ConsistencyRequest and UnmaskRequest")
	}
	m := &message{Header: Header{Type: typ, Round: e.cfg.Round, Sender: ServerID, Recipient: id}, ids: scanIDs(t, td, "survivors")}
	if td.HasArg("sigs") {
		m.hasSigs = true
		for _, v := range scanIDs(t, td, "sigs") {
			sig := e.sentBy[v][MsgConsistencySig]
			if sig == nil {
				td.Fatalf(t, "c%d sent no ConsistencySig", v)
			}
			sm, _ := decode(sig)
			m.sigs = append(m.sigs, sigEntry{id: v, sig: sm.sig})
		}
	}
	data := m.encode()
	e.printf("server (malicious) -> c%d  %s", id, describe(data))
	e.sentTo[id][typ] = data
	e.replayToClient(id, data)
}

func (e *interactionEnv) shares() {
	seen := false
	th := e.cfg.Threshold
	for u, rv := range e.revealed {
		b, sk := rv[shareSelfMask], rv[shareMaskKey]
		if len(b) == 0 && len(sk) == 0 {
			continue
		}
		seen = true
		line := fmt.Sprintf("about c%d: b_u from %s, s_u^SK from %s", u, fmtIDs(b), fmtIDs(sk))
		if len(b) >= th && len(sk) >= th {
			line += fmt.Sprintf(": BOTH reconstructible (t=%d): c%d's input is exposed", th, u)
		}
		e.printf("%s", line)
	}
	if !seen {
		e.printf("no shares revealed")
	}
}

func (e *interactionEnv) status() {
	e.printf("server: %v", e.srv.Stage())
	for id, c := range e.clients {
		line := fmt.Sprintf("c%d: %s", id, clientStageNames[c.stage])
		if e.gone[id] {
			line += ", gone"
		} else if st, ok := e.dropAt[uint32(id)]; ok {
			line += fmt.Sprintf(", drops at %v", st)
		}
		e.printf("%s", line)
	}
}

// result prints the server's result and checks it: the sum must equal the plain sum, in the
// ring, of the inputs of the clients whose masked input the server accepted, and the server
// must never have seen threshold shares of both secrets of one client.
func (e *interactionEnv) result(t *testing.T, td *datadriven.TestData) {
	t0 := e.cfg.Threshold
	for u, rv := range e.revealed {
		if len(rv[shareSelfMask]) >= t0 && len(rv[shareMaskKey]) >= t0 {
			e.printf("PRIVACY BROKEN: the server saw %d shares of b_%d and %d of s_%d^SK", len(rv[shareSelfMask]), u, len(rv[shareMaskKey]), u)
			t.Errorf("%s: the server holds both secrets of client %d", td.Pos, u)
		}
	}
	res, err := e.srv.Result()
	if err != nil {
		e.printf("no result: %v", err)
		return
	}
	want := members(e.masked)
	plain := make([]uint32, e.cfg.Dim+1)
	for _, u := range want {
		if e.inputs[u] == nil {
			t.Errorf("%s: survivor %d has no recorded input", td.Pos, u)
			continue
		}
		for i, v := range e.inputs[u] {
			plain[i] += v
		}
	}
	ringMask := uint32(uint64(1)<<e.cfg.RingBits() - 1)
	for i := range plain {
		plain[i] &= ringMask
	}
	d := e.cfg.Dim
	e.printf("survivors U3 = %s", fmtIDs(res.Survivors))
	e.printf("secure sum %s, weight %d", fmtVals(res.Ring[:d]), res.Ring[d])
	e.printf("plain sum  %s, weight %d (inputs of %s)", fmtVals(plain[:d]), plain[d], fmtIDs(want))
	if slices.Equal(res.Survivors, want) && slices.Equal(res.Ring, plain) {
		e.printf("ok: the secure sum is the plain sum of the survivors' inputs")
		return
	}
	e.printf("MISMATCH: the secure sum is not the plain sum of the survivors' inputs")
	t.Errorf("%s: secure sum %v over %v, plain sum %v over %v", td.Pos, res.Ring, res.Survivors, plain, want)
}
