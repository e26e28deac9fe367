package tier

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/fl"
	"shoal/he"
	"shoal/internal/testsupport"
	"shoal/securesum"
)

// heBound is the largest error of a coordinate of the new model in these tests: each group's
// decrypted sum and weight are each within he.Params.MaxAbsError(T) (2.4·10⁻⁶ for T = 2) of the
// exact ones, the coordinator divides by a total weight of ≥ 6, and the model is float32 (the
// updates are ~0.05: half an ulp is 4·10⁻⁹).
func heBound(groups, threshold int) float64 {
	return 2 * float64(groups) * he.DefaultParams().MaxAbsError(threshold)
}

// Threshold HE per group: each edge's group of four runs its own key ceremony among three of
// its devices, the devices encrypt under the group's key, the committee decrypts the group's
// sum, and the master aggregation of the two group sums is the FedAvg of every device's update
// within CKKS precision.
func TestHEGroupsEqualDirectAggregate(t *testing.T) {
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 4})
	e := p.engine(t, time.Minute)
	for round, global := range [][]float32{{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}, {0, 0.5, -0.5, 0.25, 0, 0, 1}} {
		want := testsupport.FedAvg(global, round+1, p.weight)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		rep, err := e.RunRound(ctx, round+1, global)
		cancel()
		if err != nil || rep.Abandoned != "" || rep.Participants != 8 {
			t.Fatalf("round %d: %+v, %v", round+1, rep, err)
		}
		if g := p.coord.Groups(round + 1); len(g) != 2 || g[0].Size != 4 {
			t.Fatalf("groups %+v, want one of four devices per edge", g)
		}
		testsupport.CloseTo(t, global, want, heBound(2, 2))
	}
	if d := e.SecureSum.Describe(); !strings.Contains(d, "its own key ceremony") {
		t.Fatalf("description %q does not say each group runs its own ceremony", d)
	}
}

// A committee member crashes mid-round.
//
// After the key ceremony (as the upload request arrives): with K = 4 and T = 2 the approval
// quorum ⌈(K+T)/2⌉ = 3 survives one crash, and the group decrypts the sum of its other three
// devices with two members' shares. (A crash of one of the T members chosen to decrypt, after
// approving, loses the group: each member releases one share per round.)
//
// During the key ceremony, which needs all K members: with K = 3 the edge seats another
// committee among the three devices left and the group decrypts their sum; with K = 4 three are
// too few, the group is lost, and the round goes on with the other edge's group.
func TestHEGroupCommitteeMemberCrashes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k     int
		stage int
		lost  bool // edge a's group is lost
	}{
		{"after-ceremony", 4, 3, false},
		{"during-ceremony-reseated", 3, 1, false},
		{"during-ceremony-lost", 4, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			member := map[string]bool{}
			crashed := ""
			crash := func(dev, kind string, stage int) bool {
				mu.Lock()
				defer mu.Unlock()
				if kind == "exchange" && stage == 0 {
					member[dev] = true // asked to join the first ceremony: on its committee
				}
				// The first committee member of edge a to reach the stage dies there.
				if crashed == "" && kind == "exchange" && stage == tc.stage && member[dev] && strings.HasPrefix(dev, "a") {
					crashed = dev
					return true
				}
				return false
			}
			// A minimum group of 3: each edge's four devices form one group, whose sum may then
			// cover the three survivors (a secure group's sum must cover the minimum).
			p := startPopulationWith(t, "he", populationOptions{heCommittee: tc.k, heThreshold: 2, minGroup: 3, crash: crash})
			e := p.engine(t, time.Minute)
			initial := []float32{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}
			global := slices.Clone(initial) // the round updates it in place
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := e.RunRound(ctx, 1, global)
			if err != nil || rep.Abandoned != "" {
				t.Fatalf("round: %+v, %v", rep, err)
			}
			mu.Lock()
			who := crashed
			mu.Unlock()
			if who == "" {
				t.Fatal("no committee member crashed")
			}
			t.Logf("committee member %s crashed at stage %d", who, tc.stage)
			dead := fl.ClientID(who[1] - '0') // device aK is Trainer K (edge b's are 10 + K)
			kept := p.weights(func(id fl.ClientID) bool { return id != dead && (!tc.lost || id >= 10) })
			testsupport.CloseTo(t, global, testsupport.FedAvg(initial, 1, kept), heBound(2, 2))
		})
	}
}

// The committee is drawn uniformly from the group (crypto/rand), not the lowest ids.
func TestDrawCommitteeUniform(t *testing.T) {
	holders := []fl.ClientID{3, 5, 8, 13, 21, 34}
	const draws, k = 6000, 2
	counts := map[fl.ClientID]int{}
	for range draws {
		c, err := drawCommittee(holders, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != k || c[0] == c[1] {
			t.Fatalf("committee %v", c)
		}
		for _, id := range c {
			counts[id]++
		}
	}
	want := float64(draws*k) / float64(len(holders))
	chi := 0.0
	for _, id := range holders {
		d := float64(counts[id]) - want
		chi += d * d / want
	}
	// 5 degrees of freedom: the 99.9 % quantile is 20.5.
	if chi > 20.5 {
		t.Fatalf("χ² = %.1f: not uniform (%v)", chi, counts)
	}
}

// evilHE is a malicious device's protocol half: the honest one, with its input rewritten before
// it is encrypted (input), and its upload rewritten after (upload). otherRound makes the device
// encrypt and sign its update for the next round instead of the one asked.
type evilHE struct {
	fl.SecureSum
	input      func(*fl.SumInput)
	upload     func([]byte) []byte
	sealed     func([]byte) []byte // rewrites the reply to the ceremony's directory
	otherRound bool
}

// evilDevice returns a populationOptions.device that gives device dev the protocol half evil
// (built from the device's honest Local) and every other device its honest one.
func evilDevice(dev string, evil func(honest fl.SecureSum) fl.SecureSum) func(string, securesum.Local) func(string, []byte) (fl.SecureSum, error) {
	return func(d string, local securesum.Local) func(string, []byte) (fl.SecureSum, error) {
		if d != dev {
			return nil
		}
		return func(name string, params []byte) (fl.SecureSum, error) {
			honest, err := securesum.FromWireLocal(local)(name, params)
			if err != nil {
				return nil, err
			}
			return evil(honest), nil
		}
	}
}

func (e *evilHE) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	if in.Update != nil && e.input != nil {
		e.input(&in)
	}
	r := round
	if e.otherRound {
		r++
	}
	c, err := e.SecureSum.NewClient(r, id, in)
	if err != nil {
		return nil, err
	}
	return &evilHEClient{SumClient: c, e: e, round: uint64(r)}, nil
}

type evilHEClient struct {
	fl.SumClient
	e     *evilHE
	round uint64
}

// Kinds of securesum's HE adapter messages: the ceremony's directory and the round's upload request.
const (
	heDirectoryKind     = 2
	heUploadRequestKind = 4
)

func (c *evilHEClient) Handle(msg []byte) ([]byte, error) {
	upload := len(msg) > 9 && msg[0] == heUploadRequestKind
	if upload && c.e.otherRound {
		msg = slices.Clone(msg)
		binary.BigEndian.PutUint64(msg[1:], c.round)
	}
	reply, err := c.SumClient.Handle(msg)
	if err == nil && upload && c.e.upload != nil {
		reply = c.e.upload(reply)
	}
	if err == nil && len(msg) > 0 && msg[0] == heDirectoryKind && c.e.sealed != nil {
		reply = c.e.sealed(reply)
	}
	return reply, err
}

// capturedSum records the master aggregation's result, as the engine receives it.
type capturedSum struct {
	*Grouped
	mu  sync.Mutex
	res []fl.SumResult
}

func (c *capturedSum) NewServer(round int, holders []fl.ClientID, dim int, maxWeight float64) (fl.SumServer, error) {
	s, err := c.Grouped.NewServer(round, holders, dim, maxWeight)
	return &capturedServer{SumServer: s, c: c}, err
}

type capturedServer struct {
	fl.SumServer
	c *capturedSum
}

func (s *capturedServer) Result() (fl.SumResult, error) {
	res, err := s.SumServer.Result()
	if err == nil {
		s.c.mu.Lock()
		s.c.res = append(s.c.res, res)
		s.c.mu.Unlock()
	}
	return res, err
}

// Attack: a device of an HE group encrypts −10⁹ in its unclipped slot (one more value of its
// encrypted update, which only the group's sum reveals). Summed, the group's unclipped count
// was −10⁹; with adaptive clipping the coordinator's clip became clip·e^(η·10⁹/n): +Inf, which
// stops the run, or any factor the device likes. The coordinator clamps each group's count to
// [0, count]: the device moves it no further than its group's devices all clipped would.
func TestAttackDeviceHEUnclippedCountOutOfRange(t *testing.T) {
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 4,
		device: evilDevice("a0", func(h fl.SecureSum) fl.SecureSum {
			return &evilHE{SecureSum: h, input: func(in *fl.SumInput) { in.Unclipped = -1e9 }}
		})})
	e := testsupport.Engine(t, p.coord, 1)
	sum := &capturedSum{Grouped: &Grouped{Inner: p.inner, Coord: p.coord}}
	e.SecureSum = sum
	e.Config.StageTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := e.RunRound(ctx, 1, make([]float32, 7))
	if err != nil || rep.Abandoned != "" {
		t.Fatalf("round: %+v, %v", rep, err)
	}
	if len(sum.res) != 1 {
		t.Fatalf("%d master sums", len(sum.res))
	}
	res := sum.res[0]
	if res.Unclipped < 0 || res.Unclipped > float64(res.Count) {
		t.Fatalf("the coordinator took an unclipped count of %v for %d devices", res.Unclipped, res.Count)
	}
	if rep.Participants != 8 || res.Count != 8 {
		t.Fatalf("round %+v, master sum of %d devices: want both groups", rep, res.Count)
	}
}

// Attack: a device of an HE group sends its edge a broken upload — random bytes, a truncated
// upload, a ciphertext with one byte changed (its signature no longer holds), or a well-formed,
// signed upload for the next round — to crash the edge or poison its group's sum. The edge drops
// the device from the group's sum and the group decrypts the other three devices' sum exactly
// (the minimum group is 3). A device that encrypts a weight of 10⁹ (its reported example count
// is 1) cannot be told apart by the edge, which sees ciphertexts only; the coordinator refuses
// the group's decrypted weight (above count × the largest reported weight): the group is lost,
// the round goes on with the other edge's group.
func TestAttackDeviceHEBrokenUpload(t *testing.T) {
	flip := func(b []byte) []byte {
		b = slices.Clone(b)
		b[len(b)/2] ^= 0x40
		return b
	}
	for _, tc := range []struct {
		name string
		evil *evilHE
		lost bool // edge a's group is lost (else it sums the other three devices)
	}{
		{"garbage", &evilHE{upload: func(b []byte) []byte { return bytes.Repeat([]byte{0xa5}, len(b)) }}, false},
		{"truncated", &evilHE{upload: func(b []byte) []byte { return b[:len(b)/2] }}, false},
		{"flipped", &evilHE{upload: flip}, false},
		{"other-round", &evilHE{otherRound: true}, false},
		{"huge-weight", &evilHE{input: func(in *fl.SumInput) { in.Weight = 1e9 }}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 3,
				device: evilDevice("a0", func(h fl.SecureSum) fl.SecureSum { tc.evil.SecureSum = h; return tc.evil })})
			e := p.engine(t, time.Minute)
			initial := []float32{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}
			global := slices.Clone(initial)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := e.RunRound(ctx, 1, global)
			if err != nil || rep.Abandoned != "" {
				t.Fatalf("round: %+v, %v", rep, err)
			}
			kept := p.weights(func(id fl.ClientID) bool { return id != 0 && (!tc.lost || id >= 10) }) // device a0 is Trainer 0
			if rep.Participants != len(kept) {
				t.Fatalf("round %+v: want %d participants", rep, len(kept))
			}
			testsupport.CloseTo(t, global, testsupport.FedAvg(initial, 1, kept), heBound(2, 2))
		})
	}
}

// Attack: one device holds two seats of its group's committee. Device a1 presents a0's name
// (under a CA: a0's certificate, connected twice), and the edge seats both among the K = 4 of
// the group: with T = 2, the holder of both seats alone would hold the threshold of the group's
// key and decrypt any device's upload. Every member checks that the ceremony's directory
// carries distinct certified names and refuses it; no key is endorsed, no device of the group
// encrypts, the group is lost (its one other committee holds the same four devices) and the round
// goes on with the other edge's group.
func TestAttackHEDeviceTwoCommitteeSeats(t *testing.T) {
	var mu sync.Mutex
	var uploads []string
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 4, heThreshold: 2, minGroup: 4,
		device: func(dev string, local securesum.Local) func(string, []byte) (fl.SecureSum, error) {
			if !strings.HasPrefix(dev, "a") {
				return nil
			}
			if dev == "a1" {
				twin, err := securesum.InsecureClient("a0")
				if err != nil {
					t.Fatal(err)
				}
				local.Identity = twin.Identity
			}
			return evilDevice(dev, func(h fl.SecureSum) fl.SecureSum {
				return &evilHE{SecureSum: h, upload: func(b []byte) []byte { // an honest upload, recorded
					mu.Lock()
					uploads = append(uploads, dev)
					mu.Unlock()
					return b
				}}
			})(dev, local)
		}})
	e := p.engine(t, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := e.RunRound(ctx, 1, make([]float32, 7))
	if err != nil || rep.Abandoned != "" || rep.Participants != 4 {
		t.Fatalf("round %+v, %v: want edge b's group alone", rep, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(uploads) > 0 {
		t.Fatalf("devices %v of edge a encrypted under a key with one party in two seats", uploads)
	}
}

// Attack: differencing within a group's round. The edge runs the group's ceremony and round
// honestly and the committee decrypts the sum of its four devices; then the edge asks the same
// members, under the same key, to approve the manifest of three of those uploads (the sum of
// the fourth would be the difference), and to approve the four round-1 uploads again as round
// 2's manifest. Every member approves one contributor set per round and checks every upload's
// signature against the round it approves: all refuse both.
func TestAttackEdgeHEDifferencesTwoManifests(t *testing.T) {
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 4})
	srv := p.servers["a"]
	holders := srv.Roster()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ins := fl.FitIns{Round: 1, Params: make([]float32, 7), Secure: true, Config: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}}
	trained := 0
	if err := srv.Fit(ctx, holders, ins, func(o fl.FitOutcome) {
		if o.Err == nil {
			trained++
		}
	}); err != nil || trained != len(holders) {
		t.Fatalf("fit: %d of %d trained, %v", trained, len(holders), err)
	}
	sum := &keyedSum{proto: p.inner.(*securesum.HE), holders: holders, gone: map[fl.ClientID]bool{}, log: slog.New(slog.DiscardHandler),
		newRound: func(g *securesum.HE) (fl.SumServer, error) { return g.NewServer(1, holders, 7, 4) }}
	if err := sum.seat(); err != nil {
		t.Fatal(err)
	}
	rec := &approvalRecorder{SumServer: sum}
	if err := fl.DriveSecureSum(ctx, srv, 1, rec, 20*time.Second, slog.New(slog.DiscardHandler), nil); err != nil {
		t.Fatal(err)
	}
	if res, err := sum.Result(); err != nil || res.Count != 4 {
		t.Fatalf("honest group sum: %+v, %v", res, err)
	}
	for _, tc := range []struct {
		name string
		edit func(*he.ApprovalRequest)
	}{
		{"subset", func(r *he.ApprovalRequest) { r.Contributions = r.Contributions[:3] }},
		{"next-round", func(r *he.ApprovalRequest) { r.Round++ }},
	} {
		req, err := he.DecodeApprovalRequest(rec.request[1:])
		if err != nil {
			t.Fatal(err)
		}
		tc.edit(req)
		b, err := req.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		msgs := map[fl.ClientID][]byte{}
		for _, id := range rec.members {
			msgs[id] = append([]byte{rec.request[0]}, b...)
		}
		var approved []fl.ClientID
		_ = srv.Exchange(ctx, 1, 10, msgs, func(id fl.ClientID, _ []byte, err error) {
			if err == nil {
				approved = append(approved, id)
			}
		})
		if len(approved) > 0 {
			t.Fatalf("%s: members %v approved a second manifest of the group's uploads", tc.name, approved)
		}
	}
}

// approvalRecorder relays a group's sum and keeps its approval request and the members asked.
type approvalRecorder struct {
	fl.SumServer
	request []byte
	members []fl.ClientID
}

func (r *approvalRecorder) Next() (map[fl.ClientID][]byte, bool, error) {
	msgs, done, err := r.SumServer.Next()
	for id, b := range msgs {
		if len(b) > 0 && b[0] == 5 { // securesum's HE adapter: the approval request
			r.request, r.members = b, append(r.members, id)
		}
	}
	return msgs, done, err
}

// Attack: a device on its group's committee grinds the committee. Seated, it sends every other
// member a sealed Shamir share that does not open (the edge relays sealed boxes it cannot
// read); each of them refuses the ceremony. Had the edge left the refusing members out of the
// next draw, the next committee would be drawn among the saboteur and its accomplices: one
// ceremony at a time, the honest devices leave the pool, until T colluders hold the key. The
// edge leaves out only the members at fault by their own answer (a refused description, a
// silent or lost device, a reply the edge refuses): the refusing members stay in the draw.
func TestAttackHEMemberGrindsCommittee(t *testing.T) {
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 3,
		device: evilDevice("a0", func(h fl.SecureSum) fl.SecureSum { return &evilHE{SecureSum: h, sealed: spoilSealedShares} })})
	srv := p.servers["a"]
	holders := srv.Roster()
	saboteur := fl.ClientID(0) // a0: the edge numbers its devices in name order
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ins := fl.FitIns{Round: 1, Params: make([]float32, 7), Secure: true, Config: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}}
	if err := srv.Fit(ctx, holders, ins, func(fl.FitOutcome) {}); err != nil {
		t.Fatal(err)
	}
	sum := &keyedSum{proto: p.inner.(*securesum.HE), holders: holders, retries: 1, gone: map[fl.ClientID]bool{}, log: slog.New(slog.DiscardHandler),
		newRound: func(g *securesum.HE) (fl.SumServer, error) { return g.NewServer(1, holders, 7, 4) }}
	for range 100 { // the saboteur's luck: it is drawn onto the first committee
		if err := sum.seat(); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(sum.committee, saboteur) {
			break
		}
	}
	first := sum.committee
	err := fl.DriveSecureSum(ctx, sum.via(srv), 1, sum, 20*time.Second, slog.New(slog.DiscardHandler), nil)
	if sum.retries != 0 {
		t.Fatalf("the first committee %v (with the saboteur) finished its ceremony: %v", first, err)
	}
	for _, id := range first {
		if id != saboteur && sum.gone[id] {
			t.Fatalf("member %d, which refused the saboteur's sealed share, was left out of the next draw (%v)", id, sum.gone)
		}
	}
	t.Logf("second committee %v: %v", sum.committee, err)
}

// spoilSealedShares changes one byte of every sealed share of a member's reply to the ceremony's
// directory (kind, count, then length-prefixed parts: its key share, then its sealed shares).
func spoilSealedShares(b []byte) []byte {
	b = slices.Clone(b)
	off := 5
	for i := range binary.BigEndian.Uint32(b[1:]) {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if i > 0 {
			b[off+4+n-1] ^= 1
		}
		off += 4 + n
	}
	return b
}

// Attack: a device of an HE group encrypts its update times 10⁴ (under DP the devices clip their
// updates to 1). The edge sees ciphertexts only, and HE, unlike SecAgg's ring, checks no range:
// the group's sum, and the new model, would be the device's. The coordinator refuses a group sum
// whose norm exceeds count × the largest weight × the clip (within the decryption error): the
// group is lost, the round goes on with the other edge's group.
func TestAttackDeviceHEUnboundedUpdate(t *testing.T) {
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 4,
		device: evilDevice("a0", func(h fl.SecureSum) fl.SecureSum {
			return &evilHE{SecureSum: h, input: func(in *fl.SumInput) {
				for i := range in.Update {
					in.Update[i] *= 1e4
				}
			}}
		})})
	e := p.engine(t, time.Minute)
	e.Config.Fit.ClipNorm = 1 // the honest devices' updates are within it (norms of 0.02 to 0.4)
	initial := []float32{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}
	global := slices.Clone(initial)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := e.RunRound(ctx, 1, global)
	if err != nil || rep.Abandoned != "" {
		t.Fatalf("round: %+v, %v", rep, err)
	}
	kept := p.weights(func(id fl.ClientID) bool { return id >= 10 })
	if rep.Participants != 4 {
		t.Fatalf("round %+v: want edge b's group of 4 alone", rep)
	}
	testsupport.CloseTo(t, global, testsupport.FedAvg(initial, 1, kept), heBound(1, 2))
}

// Attack (an honest-but-curious edge): one of a group's four devices dies as the upload request
// reaches it, leaving three uploads, while the coordinator takes only sums of at least four
// (--min-group 4) and the devices' own minimum is three. The edge had the committee approve and
// decrypt the three devices' sum, which the coordinator then refused: the edge held a sum of
// fewer devices than the run promises. The coordinator now tells the edge the minimum with the
// request, and the group's round is abandoned below it before any approval is asked: nothing is
// decrypted, and the round goes on with the other edge's group.
func TestAttackEdgeHEDecryptsBelowMinGroup(t *testing.T) {
	var mu sync.Mutex
	member := map[string]bool{}
	crashed := ""
	var approvals []string
	crash := func(dev, kind string, stage int) bool {
		if kind != "exchange" || !strings.HasPrefix(dev, "a") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stage == 0:
			member[dev] = true
		case stage == 3 && !member[dev] && crashed == "": // the upload request, to a non-member
			crashed = dev
			return true
		case stage > 3:
			approvals = append(approvals, dev)
		}
		return false
	}
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 4, crash: crash})
	e := p.engine(t, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := e.RunRound(ctx, 1, make([]float32, 7))
	if err != nil || rep.Abandoned != "" || rep.Participants != 4 {
		t.Fatalf("round %+v, %v: want edge b's group alone", rep, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if crashed == "" {
		t.Fatal("no device crashed at the upload")
	}
	if len(approvals) > 0 {
		t.Fatalf("with %s gone, edge a asked %v to approve (and decrypt) a sum of 3 devices, below the minimum group of 4", crashed, approvals)
	}
}

// Attack: a device of an HE group uploads under another device's party id (the edge numbers
// devices in name order: a1 guesses that a2 is party 3), signed with its own certificate, ahead
// of the victim. The edge took the first upload per party id: the victim's own upload was then
// refused as a duplicate, and the victim left out of its group's sum by another device. The edge
// now takes from each device only an upload under that device's own party id: the impostor is
// dropped, the victim counted.
func TestAttackDeviceHEUploadsAsAnother(t *testing.T) {
	slow := func(dev, kind string, stage int) bool {
		if dev == "a2" && kind == "exchange" && stage == 3 { // the victim answers its upload request late
			time.Sleep(300 * time.Millisecond)
		}
		return false
	}
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 3, crash: slow,
		device: evilDevice("a1", func(h fl.SecureSum) fl.SecureSum { return &impostorHE{SecureSum: h, victim: 2} })})
	e := p.engine(t, time.Minute)
	initial := []float32{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}
	global := slices.Clone(initial)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := e.RunRound(ctx, 1, global)
	if err != nil || rep.Abandoned != "" {
		t.Fatalf("round: %+v, %v", rep, err)
	}
	kept := p.weights(func(id fl.ClientID) bool { return id != 1 }) // device a1 is Trainer 1
	if rep.Participants != len(kept) {
		t.Fatalf("round %+v: want %d participants, the impostor out and its victim in", rep, len(kept))
	}
	testsupport.CloseTo(t, global, testsupport.FedAvg(initial, 1, kept), heBound(2, 2))
}

// impostorHE answers ceremony messages as itself and encrypts its update as client victim.
type impostorHE struct {
	fl.SecureSum
	victim fl.ClientID
}

func (e *impostorHE) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	self, err := e.SecureSum.NewClient(round, id, fl.SumInput{})
	if err != nil {
		return nil, err
	}
	as, err := e.SecureSum.NewClient(round, e.victim, in)
	if err != nil {
		return nil, err
	}
	return &impostorClient{self: self, as: as}, nil
}

type impostorClient struct{ self, as fl.SumClient }

func (c *impostorClient) Handle(msg []byte) ([]byte, error) {
	if len(msg) > 0 && msg[0] == heUploadRequestKind {
		return c.as.Handle(msg)
	}
	return c.self.Handle(msg)
}
