package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"
)

// RoundSpec describes one in-process round for RunRound.
type RoundSpec struct {
	Config Config
	// Input returns client id's update (Config.Dim entries) and weight. It is called just before
	// the client needs it, so a large cohort never holds all inputs at once.
	Input func(id ClientID) (update []float32, weight float64, err error)
	// Drop maps a client to the stage whose message it never sends: it leaves the round there.
	// StageAdvertise, StageShare, StageMasked, StageConsistency or StageUnmask.
	Drop map[ClientID]Stage
	// Rand returns client id's randomness source; nil means crypto/rand for everyone.
	Rand func(id ClientID) io.Reader
	// SigningKeys are the clients' Ed25519 keys when Config.VerifyKeys is set.
	SigningKeys []ed25519.PrivateKey
	// Tap, if set, sees every message delivered (from, to: a client id or ServerID).
	Tap func(from, to uint32, data []byte)
	// Check makes RunRound also sum the survivors' encoded inputs in the clear, to compare.
	Check bool
}

// StageStats are the costs of one stage: CPU seconds (CPU time of the single thread that runs
// the round; wall-clock time on systems without per-thread CPU clocks) summed over clients and of
// the server, and the bytes clients uploaded and downloaded.
type StageStats struct {
	ClientSeconds float64
	ServerSeconds float64
	UploadBytes   int64
	DownloadBytes int64
	Clients       int // clients that ran this stage (sent their message)
}

// RoundReport is what RunRound measured.
type RoundReport struct {
	Result    *Result  // nil if the round was abandoned
	Expected  []uint32 // with Check: the plain sum in Z_{2^k} of the survivors' encoded inputs
	Correct   bool     // with Check: Result.Ring equals Expected
	Stages    [StageAbandoned]StageStats
	Completed []ClientID // clients that ran every stage (sent their unmasking shares)
	// Per client: seconds spent in its state machine (and encoding), bytes uploaded, PRG bytes.
	ClientSeconds  []float64
	ClientUpload   []int64
	ClientPRGBytes []int64
	ServerSeconds  float64
	ServerPRGBytes int64
	ClientErrors   map[ClientID]error // clients that aborted
	WallSeconds    float64            // wall-clock time of the whole round, all parties
}

// RunRound runs one complete round in-process: every client and the server as state machines,
// messages passed as bytes, the clients in spec.Drop leaving at their stage. It returns the
// report and, if the round was abandoned, an error wrapping ErrAbandoned.
func RunRound(spec RoundSpec) (*RoundReport, error) {
	cfg := spec.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if spec.Input == nil {
		return nil, errors.New("run round: no input function")
	}
	if cfg.Malicious() && len(spec.SigningKeys) != cfg.Clients {
		return nil, fmt.Errorf("run round: malicious variant needs %d signing keys, have %d", cfg.Clients, len(spec.SigningKeys))
	}
	n := cfg.Clients
	// Costs are measured as the CPU time of this goroutine's thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wall := time.Now()
	rep := &RoundReport{ClientSeconds: make([]float64, n), ClientUpload: make([]int64, n),
		ClientPRGBytes: make([]int64, n), ClientErrors: map[ClientID]error{}}
	if spec.Check {
		rep.Expected = make([]uint32, cfg.Dim+1)
	}
	var srvTime time.Duration
	t0 := threadCPU()
	srv, err := NewServer(cfg)
	if err != nil {
		return nil, err
	}
	srvTime += threadCPU() - t0
	rep.Stages[StageAdvertise].ServerSeconds += (threadCPU() - t0).Seconds()
	var encBuf []uint32
	if spec.Check {
		encBuf = make([]uint32, cfg.Dim+1)
	}
	clients := make([]*Client, n)
	rngs := make([]io.Reader, n)
	gone := make([]bool, n)
	drops := func(id ClientID, st Stage) bool {
		s, ok := spec.Drop[id]
		return ok && s == st
	}
	leave := func(id ClientID) {
		gone[id] = true
		srv.MarkDropped(id)
		clients[id] = nil // frees its state, as a real departure would
	}
	serve := func(st Stage, from ClientID, msg []byte) error {
		if spec.Tap != nil {
			spec.Tap(from, ServerID, msg)
		}
		t0 := threadCPU()
		err := srv.Receive(from, msg)
		d := threadCPU() - t0
		srvTime += d
		rep.Stages[st].ServerSeconds += d.Seconds()
		rep.Stages[st].UploadBytes += int64(len(msg))
		rep.ClientUpload[from] += int64(len(msg))
		return err
	}
	advance := func(st Stage) ([]Outgoing, error) {
		t0 := threadCPU()
		out, err := srv.Advance()
		d := threadCPU() - t0
		srvTime += d
		rep.Stages[st].ServerSeconds += d.Seconds()
		return out, err
	}
	finish := func(err error) (*RoundReport, error) {
		rep.ServerSeconds = srvTime.Seconds()
		rep.WallSeconds = time.Since(wall).Seconds()
		rep.ServerPRGBytes = srv.PRGBytes()
		return rep, err
	}

	// AdvertiseKeys.
	for id := range uint32(n) {
		if spec.Rand != nil {
			rngs[id] = spec.Rand(id)
		} else {
			rngs[id] = rand.Reader
		}
		var opts []ClientOption
		if cfg.Malicious() {
			opts = append(opts, WithSigningKey(spec.SigningKeys[id]))
		}
		t0 := threadCPU()
		c, err := NewClient(cfg, id, rngs[id], opts...)
		if err != nil {
			return nil, err
		}
		clients[id] = c
		if drops(id, StageAdvertise) {
			leave(id)
			continue
		}
		msg, err := c.Start()
		d := (threadCPU() - t0).Seconds()
		rep.ClientSeconds[id] += d
		rep.Stages[StageAdvertise].ClientSeconds += d
		if err != nil {
			return nil, err
		}
		if err := serve(StageAdvertise, id, msg); err != nil {
			return nil, err
		}
		rep.Stages[StageAdvertise].Clients++
	}
	out, err := advance(StageAdvertise)
	if err != nil {
		return finish(err)
	}

	stageOf := map[MsgType]Stage{MsgKeyList: StageShare, MsgShares: StageMasked,
		MsgConsistencyRequest: StageConsistency, MsgUnmaskRequest: StageUnmask}
	for len(out) > 0 {
		h, err := Peek(out[0].Data)
		if err != nil {
			return nil, err
		}
		st := stageOf[h.Type]
		for _, o := range out {
			id := o.To
			c := clients[id]
			if gone[id] || c == nil {
				continue
			}
			rep.Stages[st].DownloadBytes += int64(len(o.Data))
			if spec.Tap != nil {
				spec.Tap(ServerID, id, o.Data)
			}
			if drops(id, st) {
				leave(id)
				continue
			}
			var enc []uint32
			var upd []float32
			var w float64
			if st == StageMasked {
				if upd, w, err = spec.Input(id); err != nil {
					return nil, fmt.Errorf("run round: input of client %d: %w", id, err)
				}
			}
			t0 := threadCPU() // the client's clock starts once the engine hands it its input
			if st == StageMasked {
				if spec.Check {
					// One scratch buffer for all clients: the client copies it.
					var rs *byteStream
					if rs, err = newByteStream(rngs[id]); err == nil {
						enc = encBuf
						if err = cfg.encodeInput(upd, w, rs, enc); err == nil {
							err = c.SetEncodedInput(enc)
						}
					}
				} else {
					err = c.SetInput(upd, w)
				}
				if err != nil {
					return nil, fmt.Errorf("run round: %w", err)
				}
			}
			reply, err := c.Handle(o.Data)
			d := (threadCPU() - t0).Seconds()
			rep.ClientSeconds[id] += d
			rep.Stages[st].ClientSeconds += d
			rep.ClientPRGBytes[id] = c.PRGBytes()
			if err != nil {
				rep.ClientErrors[id] = err
				leave(id)
				continue
			}
			if err := serve(st, id, reply); err != nil {
				return nil, fmt.Errorf("run round: server rejected client %d: %w", id, err)
			}
			rep.Stages[st].Clients++
			if enc != nil {
				for i, v := range enc {
					rep.Expected[i] += v
				}
			}
			if st == StageUnmask {
				rep.Completed = append(rep.Completed, id)
			}
		}
		if out, err = advance(st); err != nil {
			return finish(err)
		}
	}
	res, err := srv.Result()
	if err != nil {
		return finish(err)
	}
	rep.Result = res
	if spec.Check {
		mask := uint32(uint64(1)<<cfg.RingBits() - 1)
		rep.Correct = true
		for i, v := range rep.Expected {
			rep.Expected[i] = v & mask
			if rep.Expected[i] != res.Ring[i] {
				rep.Correct = false
			}
		}
	}
	return finish(nil)
}

// MeasurePRG measures (in CPU time of one thread, like RunRound), on this machine, the mask PRG's raw keystream rate (AES-128-CTR into an
// L1-resident buffer) and the rate of expanding masks into an accumulator as the protocol does
// (keystream plus the addition), in bytes per second, each over about duration d. Benchmarks
// divide the PRG bytes a stage must generate by the keystream rate to state that stage's bound.
func MeasurePRG(d time.Duration) (keystream, expand float64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var e maskExpander
	block, err := aes.NewCipher(make([]byte, prgKeySize))
	if err != nil {
		return 0, 0
	}
	ctr := cipher.NewCTR(block, e.ivZero[:])
	var n int64
	start := threadCPU()
	for threadCPU()-start < d {
		for range 64 {
			ctr.XORKeyStream(e.stream[:], e.zero[:])
		}
		n += 64 * int64(len(e.stream))
	}
	keystream = float64(n) / (threadCPU() - start).Seconds()
	acc := make([]uint32, 100_001)
	key := [prgKeySize]byte{1}
	start = threadCPU()
	for threadCPU()-start < d {
		_ = e.apply(acc, &key, +1)
	}
	return keystream, float64(e.written) / (threadCPU() - start).Seconds()
}
