package securesum

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"shoal/fl"
)

// driveServer runs any protocol server half against client halves created on demand (with
// inputs from inputs, empty otherwise), dropping clients as drop says (stage index).
func driveServer(t *testing.T, p fl.SecureSum, round int, srv fl.SumServer, inputs map[fl.ClientID]fl.SumInput, drop map[fl.ClientID]int) error {
	t.Helper()
	clients := map[fl.ClientID]fl.SumClient{}
	for stage := 0; ; stage++ {
		msgs, done, err := srv.Next()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		for id, m := range msgs {
			if at, ok := drop[id]; ok && stage >= at {
				srv.Drop(id)
				continue
			}
			c, ok := clients[id]
			if !ok {
				if c, err = p.NewClient(round, id, inputs[id]); err != nil {
					t.Fatal(err)
				}
				clients[id] = c
			}
			reply, err := c.Handle(m)
			if err == nil {
				err = srv.Receive(id, reply)
			}
			if err != nil {
				t.Fatalf("round %d stage %d client %d: %v", round, stage, id, err)
			}
		}
	}
}

func TestHEAdapterCeremonyRoundsAndThreshold(t *testing.T) {
	p, err := NewHE(HEOptions{Committee: 4, Threshold: 3, Rand: seeded(9)})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := p.NewSetup(p.SetupClients(8))
	if err != nil {
		t.Fatal(err)
	}
	if err := driveServer(t, p, 0, setup, nil, nil); err != nil {
		t.Fatalf("ceremony: %v", err)
	}
	const dim = 1000
	rng := rand.New(rand.NewPCG(3, 4))
	inputs := map[fl.ClientID]fl.SumInput{}
	var holders []fl.ClientID
	want := make([]float64, dim)
	var wantW, wantU float64
	for i := 2; i < 8; i++ { // clients 2, 3 are on the committee, 4..7 are not
		u := make([]float32, dim)
		for j := range u {
			u[j] = float32(rng.Float64()*2 - 1)
		}
		w := float64(1 + rng.IntN(600))
		inputs[fl.ClientID(i)] = fl.SumInput{Update: u, Weight: w, Unclipped: float64(i % 2)}
		holders = append(holders, fl.ClientID(i))
		for j, v := range u {
			want[j] += w * float64(v)
		}
		wantW += w
		wantU += float64(i % 2)
	}
	for _, tc := range []struct {
		name string
		drop map[fl.ClientID]int
		ok   bool
	}{
		{"all online", nil, true},
		{"one member offline", map[fl.ClientID]int{1: 1}, true},         // 3 of 4 answer the ping
		{"two members offline", map[fl.ClientID]int{0: 1, 3: 1}, false}, // 2 < T: nothing decrypted
		{"member leaves after ping", map[fl.ClientID]int{0: 2}, false},  // an active member's share missing
	} {
		srv, err := p.NewServer(5, holders, dim, 1)
		if err != nil {
			t.Fatal(err)
		}
		err = driveServer(t, p, 5, srv, inputs, tc.drop)
		if !tc.ok {
			if !errors.Is(err, fl.ErrRoundAbandoned) {
				t.Fatalf("%s: err = %v, want the round abandoned", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		res, err := srv.Result()
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != len(holders) || math.Abs(res.Weight-wantW) > 1e-3 || math.Abs(res.Unclipped-wantU) > 1e-3 {
			t.Fatalf("%s: count %d weight %v unclipped %v, want %d %v %v", tc.name, res.Count, res.Weight, res.Unclipped, len(holders), wantW, wantU)
		}
		for j := range want {
			if math.Abs(res.Sum[j]-want[j]) > 1e-3 {
				t.Fatalf("%s: entry %d = %v, want %v", tc.name, j, res.Sum[j], want[j])
			}
		}
	}
}

func TestHEAdapterRefusals(t *testing.T) {
	for _, o := range []HEOptions{{Committee: 1, Threshold: 1}, {Committee: 3, Threshold: 4}, {Committee: 3, Threshold: 0}} {
		if _, err := NewHE(o); err == nil {
			t.Fatalf("options %+v accepted", o)
		}
	}
	p, _ := NewHE(HEOptions{Committee: 3, Threshold: 2})
	if _, err := p.NewServer(1, []fl.ClientID{1, 2}, 4, 1); err == nil {
		t.Fatal("a round before the key ceremony was accepted")
	}
	c, _ := p.NewClient(1, 5, fl.SumInput{})
	for _, m := range [][]byte{nil, {99}, {heSealed, 0, 0}, {heUploadRequest, 1}} {
		if _, err := c.Handle(m); err == nil {
			t.Fatalf("malformed message %v accepted", m)
		}
	}
}

func FuzzUnframe(f *testing.F) {
	f.Add(frame(heSealed, [][]byte{[]byte("ab"), nil, []byte("xyz")}))
	f.Add([]byte{heSealed, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := unframe(heSealed, b, 8)
		if err == nil && len(parts) > 8 {
			t.Fatal("too many parts accepted")
		}
		if err == nil {
			if got := frame(heSealed, parts); string(got) != string(b) {
				t.Fatal("frame(unframe(b)) != b")
			}
		}
	})
}
