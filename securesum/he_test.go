package securesum

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"shoal/fl"
	"shoal/he"
	"shoal/pki"

	"github.com/tuneinsight/lattigo/v6/ring"
)

// driveServer runs a protocol's server half against client halves created on demand from
// clientProto(id) (with inputs from inputs, empty otherwise), dropping clients as drop says
// (stage index). clientProto stands for the process the client runs in: the server's own
// object in a simulation, one object per client in a deployment.
func driveServer(t *testing.T, clientProto func(fl.ClientID) fl.SecureSum, round int, srv fl.SumServer,
	inputs map[fl.ClientID]fl.SumInput, drop map[fl.ClientID]int) error {
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
				if c, err = clientProto(id).NewClient(round, id, inputs[id]); err != nil {
					t.Fatal(err)
				}
				clients[id] = c
			}
			reply, err := fl.HandleSafely(c, m)
			if err == nil {
				err = srv.Receive(id, reply)
			}
			if err != nil {
				return fmt.Errorf("round %d stage %d client %d: %w", round, stage, id, err)
			}
		}
	}
}

func same(p fl.SecureSum) func(fl.ClientID) fl.SecureSum {
	return func(fl.ClientID) fl.SecureSum { return p }
}

type heRound struct {
	inputs  map[fl.ClientID]fl.SumInput
	holders []fl.ClientID
	want    []float64
	wantW   float64
	wantU   float64
}

func newHERound(ids []fl.ClientID, dim int, seed uint64) *heRound {
	rng := rand.New(rand.NewPCG(seed, 4))
	r := &heRound{inputs: map[fl.ClientID]fl.SumInput{}, want: make([]float64, dim)}
	for _, id := range ids {
		u := make([]float32, dim)
		for j := range u {
			u[j] = float32(rng.Float64()*2 - 1)
		}
		w := float64(1 + rng.IntN(600))
		r.inputs[id] = fl.SumInput{Update: u, Weight: w, Unclipped: float64(id % 2)}
		r.holders = append(r.holders, id)
	}
	return r
}

// sum is the plain sum over the holders not in dropped.
func (r *heRound) check(t *testing.T, name string, res fl.SumResult, dropped map[fl.ClientID]int) {
	t.Helper()
	want := make([]float64, len(r.want))
	var w, u float64
	n := 0
	for _, id := range r.holders {
		if _, gone := dropped[id]; gone {
			continue
		}
		in := r.inputs[id]
		for j, v := range in.Update {
			want[j] += in.Weight * float64(v)
		}
		w += in.Weight
		u += in.Unclipped
		n++
	}
	if res.Count != n || math.Abs(res.Weight-w) > 1e-3 || math.Abs(res.Unclipped-u) > 1e-3 {
		t.Fatalf("%s: count %d weight %v unclipped %v, want %d %v %v", name, res.Count, res.Weight, res.Unclipped, n, w, u)
	}
	for j := range want {
		if math.Abs(res.Sum[j]-want[j]) > 1e-3 {
			t.Fatalf("%s: entry %d = %v, want %v", name, j, res.Sum[j], want[j])
		}
	}
}

func TestHEAdapterCeremonyRoundsAndThreshold(t *testing.T) {
	p, err := NewHE(HEOptions{Committee: 5, Threshold: 3, Rand: seeded(9)})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := p.NewSetup(p.SetupClients(9))
	if err != nil {
		t.Fatal(err)
	}
	if err := driveServer(t, same(p), 0, setup, nil, nil); err != nil {
		t.Fatalf("ceremony: %v", err)
	}
	const dim = 1000
	// Clients 3, 4 are on the committee, 5…8 are not. Approval quorum ⌈(5+3)/2⌉ = 4.
	r := newHERound([]fl.ClientID{3, 4, 5, 6, 7, 8}, dim, 3)
	for i, tc := range []struct {
		name string
		drop map[fl.ClientID]int
		ok   bool
	}{
		{"all online", nil, true},
		{"non-committee clients drop before uploading", map[fl.ClientID]int{5: 0, 8: 0}, true},
		{"one member offline from the approval", map[fl.ClientID]int{1: 1}, true},
		{"two members offline from the approval", map[fl.ClientID]int{0: 1, 2: 1}, false}, // 3 approvals < quorum 4
		{"member leaves after approving", map[fl.ClientID]int{0: 2}, false},               // an active member's share missing
		{"too few uploads", map[fl.ClientID]int{5: 0, 6: 0, 7: 0, 8: 0}, false},           // 2 < 3 contributors
	} {
		round := 5 + i // a member answers once per round: every case is a new round
		srv, err := p.NewServer(round, r.holders, dim, 1)
		if err != nil {
			t.Fatal(err)
		}
		err = driveServer(t, same(p), round, srv, r.inputs, tc.drop)
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
		r.check(t, tc.name, res, tc.drop)
	}
}

func TestHEAdapterRefusals(t *testing.T) {
	ca, _ := pki.NewMemoryCA()
	cert, key, _ := ca.IssueClient("c")
	for _, o := range []HEOptions{{Committee: 1, Threshold: 1}, {Committee: 3, Threshold: 4}, {Committee: 3, Threshold: 0},
		{Committee: 3, Threshold: 1}, {Committee: 3, Threshold: 2, MinContributors: 1},
		{Committee: 3, Threshold: 2, Identity: &he.Identity{Certificate: cert, Key: key}}} {
		if _, err := NewHE(o); err == nil {
			t.Fatalf("options %+v accepted", o)
		}
	}
	p, _ := NewHE(HEOptions{Committee: 3, Threshold: 2})
	if _, err := p.NewServer(1, []fl.ClientID{1, 2}, 4, 1); err == nil {
		t.Fatal("a round before the key ceremony was accepted")
	}
	c, _ := p.NewClient(1, 5, fl.SumInput{})
	for _, m := range [][]byte{nil, {99}, {heSealed, 0, 0}, {heUploadRequest, 1}, {heReveals, 0, 0, 0, 0}, {heApprovalRequest}, {heDecryptRequest}} {
		if _, err := c.Handle(m); err == nil {
			t.Fatalf("malformed message %v accepted", m)
		}
	}
	// A deployment server holds no identity: it cannot play a client.
	srv, err := NewHEFromSpec(Spec{Committee: 3, Threshold: 2}, Local{Trust: ca.Verifier()})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := srv.NewSetup(srv.SetupClients(3))
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := setup.Next()
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := srv.NewClient(0, 0, fl.SumInput{})
	if _, err := sc.Handle(msgs[0]); err == nil || !strings.Contains(err.Error(), "no client identity") {
		t.Fatalf("a server process joined the ceremony as a member: %v", err)
	}
	if _, err := FromWireLocal(Local{Trust: ca.Verifier()})("he", []byte(`{"he_committee":3,"he_threshold":2}`)); err == nil {
		t.Fatal("a deployment client without an identity accepted")
	}
	// A client's own floor on the threshold, whatever the server announces.
	strict, _ := NewHE(HEOptions{Committee: 3, Threshold: 2, MinThreshold: 3})
	c2, _ := strict.NewClient(0, 0, fl.SumInput{})
	if _, err := c2.Handle(msgs[0]); err == nil || !strings.Contains(err.Error(), "below this client's minimum") {
		t.Fatalf("a ceremony below the client's minimum threshold: %v", err)
	}
}

// deployment is one server process and one process per client, each with its own HE object
// built the way the command builds it, all under one CA.
type deployment struct {
	server  *HE
	clients map[fl.ClientID]fl.SecureSum
	build   func(fl.ClientID) fl.SecureSum
}

func newDeployment(t *testing.T, spec Spec, serverLocal Local, clientLocal func(fl.ClientID) Local) *deployment {
	t.Helper()
	srv, err := NewHEFromSpec(spec, serverLocal)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := spec.Wire()
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{server: srv, clients: map[fl.ClientID]fl.SecureSum{}}
	d.build = func(id fl.ClientID) fl.SecureSum {
		if c, ok := d.clients[id]; ok {
			return c
		}
		c, err := FromWireLocal(clientLocal(id))("he", wire)
		if err != nil {
			t.Fatal(err)
		}
		d.clients[id] = c
		return c
	}
	return d
}

// ceremony runs the key ceremony among the first n clients.
func (d *deployment) ceremony(t *testing.T, n int) {
	t.Helper()
	setup, err := d.server.NewSetup(d.server.SetupClients(n))
	if err != nil {
		t.Fatal(err)
	}
	if err := driveServer(t, d.build, 0, setup, nil, nil); err != nil {
		t.Fatalf("ceremony: %v", err)
	}
}

// round runs round among r's clients and checks its sum.
func (d *deployment) round(t *testing.T, round int, r *heRound, dim int, name string) {
	t.Helper()
	srv, err := d.server.NewServer(round, r.holders, dim, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := driveServer(t, d.build, round, srv, r.inputs, nil); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	res, err := srv.Result()
	if err != nil {
		t.Fatal(err)
	}
	r.check(t, name, res, nil)
}

// TestHEDeploymentIdentities runs the ceremony and rounds with every client in its own HE
// object, signing with its own certificate from a CA whose certificate every party holds —
// and shows that a client built with FromWire alone (a simulation's in-memory CA) refuses the
// run's messages instead of trusting them.
func TestHEDeploymentIdentities(t *testing.T) {
	ca, err := pki.NewMemoryCA()
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Committee: 3, Threshold: 2}
	d := newDeployment(t, spec, Local{Trust: ca.Verifier()}, func(id fl.ClientID) Local {
		cert, key, err := ca.IssueClient(fmt.Sprintf("client-%d", id))
		if err != nil {
			t.Fatal(err)
		}
		return Local{Identity: &he.Identity{Certificate: cert, Key: key}, Trust: ca.Verifier()}
	})
	d.ceremony(t, 6)
	const dim = 50
	r := newHERound([]fl.ClientID{1, 3, 4, 5}, dim, 7)
	for round := 1; round <= 2; round++ {
		d.round(t, round, r, dim, fmt.Sprintf("round %d", round))
	}
	// A client that trusts only a committee of other names refuses the setup.
	picky := newDeployment(t, spec, Local{Trust: ca.Verifier()}, func(id fl.ClientID) Local {
		cert, key, _ := ca.IssueClient(fmt.Sprintf("picky-%d", id))
		return Local{Identity: &he.Identity{Certificate: cert, Key: key}, Trust: ca.Verifier(),
			TrustedCommittee: []string{"client-0", "client-1", "someone-else"}}
	})
	pickySrv, _ := d.server.NewServer(3, []fl.ClientID{4}, dim, 1)
	pm, _, _ := pickySrv.Next()
	pc, _ := picky.build(4).NewClient(3, 4, r.inputs[4])
	if _, err := pc.Handle(pm[4]); !errors.Is(err, he.ErrUntrusted) || !strings.Contains(err.Error(), "client-2") {
		t.Fatalf("a client encrypted under a committee it does not trust: %v", err)
	}
	// A client process built without its identity (FromWire: a simulation of its own) does not
	// trust the run's setup: fail closed, with the reason.
	wire, _ := spec.Wire()
	naive, err := FromWire("he", wire)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := d.server.NewServer(4, []fl.ClientID{5}, dim, 1)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := srv.Next()
	if err != nil {
		t.Fatal(err)
	}
	c, _ := naive.NewClient(4, 5, r.inputs[5])
	if _, err := c.Handle(msgs[5]); err == nil || !strings.Contains(err.Error(), "FromWireLocal") {
		t.Fatalf("a client without its identity encrypted under the run's setup: %v", err)
	}
}

// TestHEInsecureDeployment: --insecure runs keep working with throwaway self-signed
// identities (and protect nothing against the server).
func TestHEInsecureDeployment(t *testing.T) {
	spec := Spec{Committee: 2, Threshold: 2}
	d := newDeployment(t, spec, InsecureServer(), func(id fl.ClientID) Local {
		l, err := InsecureClient(fmt.Sprintf("client-%d", id))
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
	d.ceremony(t, 4)
	d.round(t, 1, newHERound([]fl.ClientID{0, 1, 2, 3}, 10, 1), 10, "insecure")
}

// TestAttackAdapterSubstitutedSetup: a server that sends, with the upload request, a setup
// whose public key it holds the secret of gets no upload: the client verifies the members'
// endorsements against its own trust root.
func TestAttackAdapterSubstitutedSetup(t *testing.T) {
	p, err := NewHE(HEOptions{Committee: 3, Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	cer, err := p.NewSetup(p.SetupClients(5))
	if err != nil {
		t.Fatal(err)
	}
	if err := driveServer(t, same(p), 0, cer, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The server's own key pair, through a ceremony of its own (its own committee identities
	// from its own in-memory CA, named like the real members).
	rogue, err := NewHE(HEOptions{Committee: 3, Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	rcer, _ := rogue.NewSetup(rogue.SetupClients(5))
	if err := driveServer(t, same(rogue), 0, rcer, nil, nil); err != nil {
		t.Fatal(err)
	}
	const dim = 8
	r := newHERound([]fl.ClientID{3}, dim, 2)
	real, _ := p.NewServer(1, r.holders, dim, 1)
	fake, _ := rogue.NewServer(1, r.holders, dim, 1)
	realMsgs, _, _ := real.Next()
	fakeMsgs, _, _ := fake.Next()
	// The real setup with the public key swapped for the rogue one.
	realSetup, err := he.DecodePublicSetup(realMsgs[3][13:])
	if err != nil {
		t.Fatal(err)
	}
	fakeSetup, _ := he.DecodePublicSetup(fakeMsgs[3][13:])
	swapped := *realSetup
	swapped.PublicKey = fakeSetup.PublicKey
	sb, _ := swapped.MarshalBinary()
	for name, msg := range map[string][]byte{
		"a ceremony of the server's own":  fakeMsgs[3],
		"the members' setup, another key": append(bytes.Clone(realMsgs[3][:13]), sb...),
	} {
		c, _ := p.NewClient(1, 3, r.inputs[3])
		reply, err := c.Handle(msg)
		if err == nil || !errors.Is(err, he.ErrUntrusted) || reply != nil {
			t.Fatalf("%s: the client answered (%d bytes, %v)", name, len(reply), err)
		}
	}
	c, _ := p.NewClient(1, 3, r.inputs[3])
	if _, err := c.Handle(realMsgs[3]); err != nil {
		t.Fatalf("the real setup: %v", err)
	}
}

// TestAttackAdapterDecryptVictimAlone: the members' adapter refuses to approve or decrypt a
// round that holds one client's upload, however the server dresses the request up.
func TestAttackAdapterDecryptVictimAlone(t *testing.T) {
	p, err := NewHE(HEOptions{Committee: 3, Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	cer, _ := p.NewSetup(p.SetupClients(5))
	if err := driveServer(t, same(p), 0, cer, nil, nil); err != nil {
		t.Fatal(err)
	}
	const dim = 8
	r := newHERound([]fl.ClientID{4}, dim, 5)
	srv, _ := p.NewServer(9, r.holders, dim, 1)
	msgs, _, _ := srv.Next()
	victim, _ := p.NewClient(9, 4, r.inputs[4])
	up, err := victim.Handle(msgs[4])
	if err != nil {
		t.Fatal(err)
	}
	u, err := he.DecodeUpload(p.params, up)
	if err != nil {
		t.Fatal(err)
	}
	// The server's forged manifest: the victim's contribution alone, and relabelled copies.
	a, _ := he.NewAggregator(p.setup, 9, dim+1, he.AggregatorConfig{MinContributors: 2})
	if err := a.Add(u); err != nil {
		t.Fatal(err)
	}
	relabelled := *u
	relabelled.From = partyOf(2)
	if err := a.Add(&relabelled); err != nil { // the server does not check: no trust given
		t.Fatal(err)
	}
	areq, err := a.ApprovalRequest()
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := areq.MarshalBinary()
	for id := range fl.ClientID(3) {
		c, _ := p.NewClient(9, id, fl.SumInput{})
		if _, err := c.Handle(append([]byte{heApprovalRequest}, ab...)); err == nil {
			t.Fatalf("member %d approved a round of the victim alone", id)
		}
	}
	// The old attack: a decryption request straight away, without approvals.
	c1 := []ring.Poly{u.Ciphertexts[0][1]}
	req := &he.DecryptRequest{Ceremony: u.Ceremony, Round: 9, Dim: dim + 1, Active: []he.PartyID{1, 2},
		Contributions: areq.Contributions, C1: [][]ring.Poly{c1, c1}}
	b, err := req.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for id := range fl.ClientID(2) {
		c, _ := p.NewClient(9, id, fl.SumInput{})
		if _, err := c.Handle(append([]byte{heDecryptRequest}, b...)); err == nil {
			t.Fatalf("member %d decrypted a round of the victim alone", id)
		}
	}
}

// TestHEDeploymentFromCertificateDirectory: the command's wiring, identities and trust root
// loaded from a certificate directory laid out by package pki.
func TestHEDeploymentFromCertificateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.InitCA(dir, nil, false); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := pki.IssueClient(dir, fmt.Sprintf("c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	server, err := LoadServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := newDeployment(t, Spec{Committee: 3, Threshold: 2}, server, func(id fl.ClientID) Local {
		l, err := LoadClient(dir, fmt.Sprintf("c%d", id))
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
	d.ceremony(t, 4)
	d.round(t, 1, newHERound([]fl.ClientID{0, 1, 2, 3}, 10, 8), 10, "certificate directory")
	// With the server's revocation list, a revoked client's certificate is refused.
	if err := pki.Revoke(dir, "c3"); err != nil {
		t.Fatal(err)
	}
	revs, err := pki.OpenRevocations(dir, pki.RevocationOptions{AllowMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.LoadClientVerifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	c3, _, _ := pki.LoadClientIdentity(dir, "c3")
	c2, _, _ := pki.LoadClientIdentity(dir, "c2")
	if _, _, err := v.WithRevocations(revs).Verify(c3); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a revoked certificate verified: %v", err)
	}
	if name, _, err := v.WithRevocations(revs).Verify(c2); err != nil || name != "c2" {
		t.Fatalf("c2: %q, %v", name, err)
	}
	if _, _, err := v.Verify(c3); err != nil {
		t.Fatalf("without the list: %v", err)
	}
	// A key that is not the certificate's, or an unknown name, is refused.
	if _, err := LoadClient(dir, "nobody"); err == nil {
		t.Fatal("an identity without a certificate loaded")
	}
	other, err := os.ReadFile(filepath.Join(dir, pki.ClientsDir, "c1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, pki.ClientsDir, "c0-key.pem"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClient(dir, "c0"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("c1's key loaded as c0's identity: %v", err)
	}
}
