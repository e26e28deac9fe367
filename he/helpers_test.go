package he

import (
	crand "crypto/rand"
	"iter"
	"sync"
	"testing"
)

var (
	testSimOnce sync.Once
	testSim     *Simulation
	testSimErr  error
)

// testSimulation is one in-memory CA and its identities, shared by the tests (issuing an
// identity costs a key generation and a signature).
func testSimulation(t testing.TB) *Simulation {
	t.Helper()
	testSimOnce.Do(func() { testSim, testSimErr = NewSimulation() })
	if testSimErr != nil {
		t.Fatal(testSimErr)
	}
	return testSim
}

func identityOf(t testing.TB, id PartyID) Identity {
	t.Helper()
	v, err := testSimulation(t).Identity(id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func runCeremony(t testing.TB, p *Params, committee []PartyID, threshold int) (*PublicSetup, map[PartyID]*KeyMaterial) {
	t.Helper()
	setup, keys, err := RunCeremony(testSimulation(t), p, committee, threshold, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return setup, keys
}

// runRound runs a round in which every committee member approves and the members in online
// decrypt.
func runRound(t testing.TB, setup *PublicSetup, keys map[PartyID]*KeyMaterial, round uint64, dim int,
	updates iter.Seq2[PartyID, Update], online []PartyID) (*Aggregate, *RoundStats, error) {
	t.Helper()
	return RunRound(testSimulation(t), setup, keys, round, dim, updates, setup.Ceremony.Committee, online)
}

func newTestDecryptor(t testing.TB, km *KeyMaterial) *Decryptor {
	t.Helper()
	d, err := NewDecryptor(km, DecryptorConfig{Identity: identityOf(t, km.Self), Trust: testSimulation(t).Trust})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newTestEncryptor(t testing.TB, setup *PublicSetup, id PartyID) *Encryptor {
	t.Helper()
	e, err := NewEncryptor(setup, identityOf(t, id), testSimulation(t).Trust)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newTestAggregator(t testing.TB, setup *PublicSetup, round uint64, dim int) *Aggregator {
	t.Helper()
	a, err := NewAggregator(setup, round, dim, AggregatorConfig{Trust: testSimulation(t).Trust})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// approveAll has every member in members approve the aggregator's manifest.
func approveAll(t testing.TB, a *Aggregator, keys map[PartyID]*KeyMaterial, members []PartyID) map[PartyID]*Decryptor {
	t.Helper()
	req, err := a.ApprovalRequest()
	if err != nil {
		t.Fatal(err)
	}
	decs := map[PartyID]*Decryptor{}
	for _, id := range members {
		d := newTestDecryptor(t, keys[id])
		ap, err := d.Approve(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.AddApproval(ap); err != nil {
			t.Fatal(err)
		}
		decs[id] = d
	}
	return decs
}
