package tier

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"shoal/fl"
	"shoal/securesum"
)

// Threshold HE per group. A population-wide decryption committee does not fit the tier: each
// active member re-adds every contribution's c1 halves to check what it decrypts, so its
// download grows with the cohort, not with the groups. Each group is instead the analogue of
// one SecAgg instance: in every round its edge seats K of the group's devices, drawn with
// crypto/rand, runs a fresh key ceremony among them, has the group's devices encrypt under
// that key, adds the ciphertexts, and has the committee approve and decrypt the group's sum
// only. The edge never holds a key or a device's plaintext; the coordinator gets the group's
// sum, as from a SecAgg group. docs/scale.md has the why and the costs.

// heGroupSum runs one group's key ceremony and encrypted round among its holders.
func (e *Edge) heGroupSum(ctx context.Context, proto *securesum.HE, round int, holders []fl.ClientID, dim int, maxWeight float64, stageTimeout time.Duration) (fl.SumResult, error) {
	k := proto.CommitteeSize()
	if len(holders) < k {
		return fl.SumResult{}, fmt.Errorf("a group of %d devices cannot seat a decryption committee of %d", len(holders), k)
	}
	committee, err := drawCommittee(holders, k)
	if err != nil {
		return fl.SumResult{}, err
	}
	g, err := proto.NewGroup()
	if err != nil {
		return fl.SumResult{}, err
	}
	setup, err := g.NewSetup(committee)
	if err != nil {
		return fl.SumResult{}, err
	}
	start := time.Now()
	var keyed time.Time
	srv := &keyedSum{setup: setup, begin: func() (fl.SumServer, error) {
		keyed = time.Now()
		return g.NewServer(round, holders, dim, maxWeight)
	}}
	log := e.log.With("round", round, "protocol", "he group")
	log.Debug("group key ceremony", "committee", committee)
	if err := fl.DriveSecureSum(ctx, e.srv, round, srv, stageTimeout, log, nil); err != nil {
		return fl.SumResult{}, err
	}
	log.Debug("he group done", "ceremony_seconds", keyed.Sub(start).Seconds(), "round_seconds", time.Since(keyed).Seconds())
	return srv.Result()
}

// drawCommittee draws k of the holders uniformly with crypto/rand: not the lowest ids, which
// the edge assigns in connection order and a device could aim for.
func drawCommittee(holders []fl.ClientID, k int) ([]fl.ClientID, error) {
	ids := slices.Clone(holders)
	for i := range k { // partial Fisher–Yates
		j, err := rand.Int(rand.Reader, big.NewInt(int64(len(ids)-i)))
		if err != nil {
			return nil, fmt.Errorf("drawing the committee: %w", err)
		}
		p := i + int(j.Int64())
		ids[i], ids[p] = ids[p], ids[i]
	}
	return ids[:k], nil
}

// keyedSum is a group's key ceremony followed by its round, as one SumServer, so that one
// DriveSecureSum carries both with consecutive stage numbers.
type keyedSum struct {
	setup fl.SumServer
	begin func() (fl.SumServer, error) // the round, once the ceremony is done
	round fl.SumServer
}

func (s *keyedSum) Next() (map[fl.ClientID][]byte, bool, error) {
	if s.round == nil {
		msgs, done, err := s.setup.Next()
		if err != nil {
			return nil, false, fmt.Errorf("group key ceremony: %w", err)
		}
		if !done {
			return msgs, false, nil
		}
		if s.round, err = s.begin(); err != nil {
			return nil, false, err
		}
	}
	return s.round.Next()
}

func (s *keyedSum) current() fl.SumServer {
	if s.round != nil {
		return s.round
	}
	return s.setup
}

func (s *keyedSum) Receive(from fl.ClientID, msg []byte) error { return s.current().Receive(from, msg) }
func (s *keyedSum) Drop(id fl.ClientID)                        { s.current().Drop(id) }

func (s *keyedSum) Result() (fl.SumResult, error) {
	if s.round == nil {
		return fl.SumResult{}, errors.New("he group: the key ceremony did not finish")
	}
	return s.round.Result()
}
