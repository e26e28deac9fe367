package tier

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"time"

	"shoal/fl"
	tierv1 "shoal/proto/shoal/tier/v1"
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
func (e *Edge) heGroupSum(ctx context.Context, proto *securesum.HE, req *tierv1.SumGroupRequest, holders []fl.ClientID) (fl.SumResult, error) {
	round := int(req.GetRound())
	log := e.log.With("round", round, "protocol", "he group")
	srv := &keyedSum{proto: proto, holders: holders, minGroup: int(req.GetMinGroup()), retries: ceremonyRetries, gone: map[fl.ClientID]bool{}, log: log,
		newRound: func(g *securesum.HE) (fl.SumServer, error) {
			return g.NewServer(round, holders, int(req.GetDim()), req.GetMaxWeight())
		}}
	if err := srv.seat(); err != nil {
		return fl.SumResult{}, err
	}
	start := time.Now()
	if err := fl.DriveSecureSum(ctx, srv.via(e.srv), round, srv, stageTimeout(req), log, nil); err != nil {
		return fl.SumResult{}, err
	}
	log.Debug("he group done", "ceremonies", ceremonyRetries-srv.retries+1, "ceremony_seconds", srv.keyed.Sub(start).Seconds(),
		"round_seconds", time.Since(srv.keyed).Seconds())
	return srv.Result()
}

// ceremonyRetries is how many times a group's ceremony that lost a member is run again, among
// a new committee drawn from the devices that did not drop, before the group is given up.
const ceremonyRetries = 1

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
// DriveSecureSum carries both with consecutive stage numbers. A ceremony needs all K members:
// if one drops, the ceremony is run again (retries times) among K of the group's devices.
//
// Who is left out of the next draw: a member that refused the ceremony's description (its own
// floors), went silent or disconnected, or sent a reply the edge refused — each a fault of its
// own. Not a member that answered a later message (the other members' commitments, key shares
// and sealed Shamir shares, which the edge cannot open) with an error: a colluding member can
// make every other member refuse with a bad sealed share, and leaving them out would seat its
// accomplices among fewer devices next (1 extra committee of K ≤ 4 of the group's other
// devices, instead of K of all of them).
type keyedSum struct {
	proto    *securesum.HE
	holders  []fl.ClientID
	minGroup int // fewest uploads the coordinator takes a sum of: fewer are never decrypted
	retries  int
	newRound func(g *securesum.HE) (fl.SumServer, error)
	log      *slog.Logger

	g         *securesum.HE
	committee []fl.ClientID // of the current ceremony
	setup     fl.SumServer
	dropped   bool                 // a member of the current ceremony dropped
	gone      map[fl.ClientID]bool // devices dropped from a ceremony by their own fault: never seated again this round
	sent      int                  // messages of the current ceremony sent so far
	// objected: devices that answered the last message with an error of their own
	// (not lost, not silent); set by via's exchanger.
	objected map[fl.ClientID]bool
	keyed    time.Time // when the last ceremony finished
	round    fl.SumServer
}

// seat draws a committee among the holders not gone and begins its ceremony.
func (s *keyedSum) seat() error {
	k := s.proto.CommitteeSize()
	candidates := slices.DeleteFunc(slices.Clone(s.holders), func(id fl.ClientID) bool { return s.gone[id] })
	if len(candidates) < k {
		return fmt.Errorf("%d devices of the group can take part in a key ceremony, the committee needs %d", len(candidates), k)
	}
	committee, err := drawCommittee(candidates, k)
	if err != nil {
		return err
	}
	if s.g, err = s.proto.NewGroup(s.minGroup); err != nil {
		return err
	}
	if s.setup, err = s.g.NewSetup(committee); err != nil {
		return err
	}
	s.committee = committee
	s.dropped, s.sent = false, 0
	s.log.Debug("group key ceremony", "committee", committee)
	return nil
}

func (s *keyedSum) Next() (map[fl.ClientID][]byte, bool, error) {
	if s.round == nil {
		msgs, done, err := s.setup.Next()
		if err != nil && s.dropped && s.retries > 0 {
			s.retries--
			s.log.Info("group key ceremony lost a member; seating another committee", "err", err)
			if serr := s.seat(); serr != nil {
				return nil, false, fmt.Errorf("group key ceremony: %w; no other committee: %w", err, serr)
			}
			return s.Next()
		}
		if err != nil {
			return nil, false, fmt.Errorf("group key ceremony: %w", err)
		}
		if !done {
			s.sent++
			return msgs, false, nil
		}
		s.keyed = time.Now()
		if s.round, err = s.newRound(s.g); err != nil {
			return nil, false, err
		}
	}
	return s.round.Next()
}

func (s *keyedSum) Receive(from fl.ClientID, msg []byte) error {
	if s.round != nil {
		return s.round.Receive(from, msg)
	}
	return s.setup.Receive(from, msg)
}

func (s *keyedSum) Drop(id fl.ClientID) {
	if s.round != nil {
		s.round.Drop(id)
		return
	}
	s.dropped = true
	if s.sent < 2 || !s.objected[id] { // see keyedSum
		s.gone[id] = true
	}
	s.setup.Drop(id)
}

// via is x, telling s which devices answered with an error of their own: DriveSecureSum drops
// a device alike whether it answered so or went away.
func (s *keyedSum) via(x fl.Exchanger) fl.Exchanger { return objections{x, s} }

type objections struct {
	fl.Exchanger
	s *keyedSum
}

func (o objections) Exchange(ctx context.Context, round, stage int, msgs map[fl.ClientID][]byte, deliver func(fl.ClientID, []byte, error)) error {
	o.s.objected = map[fl.ClientID]bool{}
	return o.Exchanger.Exchange(ctx, round, stage, msgs, func(id fl.ClientID, reply []byte, err error) {
		// (The edge's device server delivers answers one at a time.)
		o.s.objected[id] = err != nil && !errors.Is(err, fl.ErrDropped) && !errors.Is(err, fl.ErrTimeout)
		deliver(id, reply, err)
	})
}

func (s *keyedSum) Result() (fl.SumResult, error) {
	if s.round == nil {
		return fl.SumResult{}, errors.New("he group: the key ceremony did not finish")
	}
	return s.round.Result()
}
