package he

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"shoal/internal/cputime"
	"sync"
	"time"
)

// Simulation plays every party in one process (RunCeremony, RunRound, benchmarks): it
// gives each party its identity, and every party trusts the same root.
type Simulation struct {
	Identity func(PartyID) (Identity, error)
	Trust    Trust
	// MinContributors is the server's and every member's minimum of distinct contributors
	// (0: DefaultMinContributors).
	MinContributors int
}

// NewSimulation returns a Simulation backed by a fresh in-memory CA (SimCA): party id is
// named "party-<id>", its identity issued on first use.
func NewSimulation() (*Simulation, error) {
	ca, err := NewSimCA()
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	ids := map[PartyID]Identity{}
	return &Simulation{Trust: ca.Trust(), Identity: func(id PartyID) (Identity, error) {
		mu.Lock()
		defer mu.Unlock()
		if v, ok := ids[id]; ok {
			return v, nil
		}
		v, err := ca.Issue(fmt.Sprintf("party-%d", id))
		if err != nil {
			return Identity{}, err
		}
		ids[id] = v
		return v, nil
	}}, nil
}

func (s *Simulation) decryptor(km *KeyMaterial) (*Decryptor, error) {
	id, err := s.Identity(km.Self)
	if err != nil {
		return nil, err
	}
	return NewDecryptor(km, DecryptorConfig{Identity: id, Trust: s.Trust, MinContributors: s.MinContributors})
}

// RunCeremony runs a whole key ceremony in-process: the server's and every member's state
// machines, with every message passed through its wire encoding as the engine would.
// It returns the public setup and each member's key material.
func RunCeremony(sim *Simulation, params *Params, committee []PartyID, threshold int, random io.Reader) (*PublicSetup, map[PartyID]*KeyMaterial, error) {
	cer, err := NewCeremony(params, committee, threshold, random)
	if err != nil {
		return nil, nil, err
	}
	cerBytes, err := cer.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	server, err := NewCeremonyServer(cer)
	if err != nil {
		return nil, nil, err
	}
	members := make(map[PartyID]*CeremonyMember, len(committee))
	for _, id := range committee {
		memberView, err := DecodeCeremony(cerBytes)
		if err != nil {
			return nil, nil, fmt.Errorf("he: member %d decoding ceremony: %w", id, err)
		}
		ident, err := sim.Identity(id)
		if err != nil {
			return nil, nil, err
		}
		m, msg, err := JoinCeremony(memberView, id, ident, sim.Trust, random)
		if err != nil {
			return nil, nil, fmt.Errorf("he: member %d joining: %w", id, err)
		}
		members[id] = m
		if err := relay(msg, params, noParams(DecodeKeyCommitment), server.HandleCommitment); err != nil {
			return nil, nil, err
		}
	}
	dir, err := server.Directory()
	if err != nil {
		return nil, nil, err
	}
	dirBytes, err := dir.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	for _, id := range committee {
		d, err := DecodeDirectory(dirBytes)
		if err != nil {
			return nil, nil, err
		}
		reveal, sealed, err := members[id].HandleDirectory(d)
		if err != nil {
			return nil, nil, fmt.Errorf("he: member %d: %w", id, err)
		}
		if err := relay(reveal, params, DecodeKeyGenShare, server.HandleKeyGenShare); err != nil {
			return nil, nil, err
		}
		for _, s := range sealed {
			if err := relay(s, params, DecodeSealedShare, server.HandleSealedShare); err != nil {
				return nil, nil, err
			}
		}
	}
	reveals, err := server.KeyGenShares()
	if err != nil {
		return nil, nil, err
	}
	keys := make(map[PartyID]*KeyMaterial, len(committee))
	for _, id := range committee {
		boxes, err := server.SharesFor(id)
		if err != nil {
			return nil, nil, err
		}
		view := make([]*KeyGenShare, len(reveals))
		for i, r := range reveals {
			if err := relay(r, params, DecodeKeyGenShare, func(v *KeyGenShare) error { view[i] = v; return nil }); err != nil {
				return nil, nil, err
			}
		}
		km, e, err := members[id].HandleSealedShares(view, boxes)
		if err != nil {
			return nil, nil, fmt.Errorf("he: member %d: %w", id, err)
		}
		keys[id] = km
		if err := relay(e, params, noParams(DecodeEndorsement), server.HandleEndorsement); err != nil {
			return nil, nil, err
		}
	}
	setup, err := server.Setup()
	if err != nil {
		return nil, nil, err
	}
	return setup, keys, nil
}

type marshaler interface{ MarshalBinary() ([]byte, error) }

// relay encodes msg, decodes it as the receiver would and hands it to handle.
func relay[T any](msg marshaler, p *Params, decode func(*Params, []byte) (T, error), handle func(T) error) error {
	b, err := msg.MarshalBinary()
	if err != nil {
		return err
	}
	v, err := decode(p, b)
	if err != nil {
		return err
	}
	return handle(v)
}

func noParams[T any](decode func([]byte) (T, error)) func(*Params, []byte) (T, error) {
	return func(_ *Params, b []byte) (T, error) { return decode(b) }
}

// Update is one client's plaintext contribution to a round.
type Update struct {
	Values []float32
	Weight float64
}

// RoundStats measures one in-process round.
type RoundStats struct {
	Uploads          int
	EncryptSeconds   float64 // total over clients, signing included
	AggregateSeconds float64 // decoding, verifying and adding every upload
	ApproveSeconds   float64 // every approving member's check of the manifest, and the server's of the approvals
	DecryptSeconds   float64 // request, shares (each member verifying and re-adding the c1 halves), combination and decoding
	// CPU time (user+system, all threads) of the same phases: robust on a busy machine.
	EncryptCPUSeconds   float64
	AggregateCPUSeconds float64
	ApproveCPUSeconds   float64
	DecryptCPUSeconds   float64
	// MemberShareCPUSeconds is the mean CPU time of one active member's ShareEncoded: checking
	// the request (signatures, approvals, c1 digests), re-adding the c1 halves, computing its share.
	MemberShareCPUSeconds float64
	UploadBytes           int // of one upload
	ApprovalRequestBytes  int // the manifest, sent to every reachable member
	ApprovalBytes         int // of one approval
	RequestBytes          int // the decryption request, sent to each active member
	ShareBytes            int // of one member's share
}

// RunRound runs one encrypted round in-process: every update yielded is encrypted, signed,
// encoded and streamed into the aggregator (clients that dropped before upload are simply
// not yielded); the committee members in approvers (reachable when the round closes)
// approve the contributor set, then the members in online (still reachable at decryption)
// decrypt the aggregate. Fewer than the approval quorum or the threshold returns
// ErrNotEnoughMembers with nothing decrypted.
func RunRound(sim *Simulation, setup *PublicSetup, keys map[PartyID]*KeyMaterial, round uint64, dim int,
	updates iter.Seq2[PartyID, Update], approvers, online []PartyID) (*Aggregate, *RoundStats, error) {
	agg, err := NewAggregator(setup, round, dim, AggregatorConfig{Trust: sim.Trust, MinContributors: sim.MinContributors})
	if err != nil {
		return nil, nil, err
	}
	var base *Encryptor
	stats := &RoundStats{}
	var buf []byte // one client's send buffer, reused
	for id, u := range updates {
		t0, c0 := time.Now(), cputime.Process()
		ident, err := sim.Identity(id)
		if err != nil {
			return nil, nil, err
		}
		var enc *Encryptor
		if base == nil {
			if base, err = NewEncryptor(setup, ident, sim.Trust); err != nil {
				return nil, nil, err
			}
			enc = base
		} else if enc, err = base.WithIdentity(ident); err != nil {
			return nil, nil, err
		}
		up, err := enc.Encrypt(round, id, u.Values, u.Weight)
		if err != nil {
			return nil, nil, fmt.Errorf("he: client %d: %w", id, err)
		}
		b, err := up.AppendBinary(buf[:0])
		if err != nil {
			return nil, nil, err
		}
		buf = b
		t1, c1 := time.Now(), cputime.Process()
		if err := agg.AddEncoded(b); err != nil {
			return nil, nil, fmt.Errorf("he: upload of client %d: %w", id, err)
		}
		stats.AggregateSeconds += time.Since(t1).Seconds()
		stats.AggregateCPUSeconds += (cputime.Process() - c1).Seconds()
		stats.EncryptSeconds += t1.Sub(t0).Seconds()
		stats.EncryptCPUSeconds += (c1 - c0).Seconds()
		stats.UploadBytes = len(b)
		stats.Uploads++
	}
	decryptors := map[PartyID]*Decryptor{}
	decryptor := func(id PartyID) (*Decryptor, error) {
		if d := decryptors[id]; d != nil {
			return d, nil
		}
		km := keys[id]
		if km == nil {
			return nil, fmt.Errorf("he: no key material for member %d", id)
		}
		d, err := sim.decryptor(km)
		decryptors[id] = d
		return d, err
	}
	t0, c0 := time.Now(), cputime.Process()
	appReq, err := agg.ApprovalRequest()
	if err != nil {
		return nil, stats, err
	}
	appBytes, err := appReq.MarshalBinary()
	if err != nil {
		return nil, stats, err
	}
	stats.ApprovalRequestBytes = len(appBytes)
	for _, id := range approvers {
		d, err := decryptor(id)
		if err != nil {
			return nil, stats, err
		}
		ap, err := d.ApproveEncoded(appBytes)
		if err != nil {
			return nil, stats, fmt.Errorf("he: member %d: %w", id, err)
		}
		b, err := ap.MarshalBinary()
		if err != nil {
			return nil, stats, err
		}
		stats.ApprovalBytes = len(b)
		if err := agg.AddApprovalEncoded(b); err != nil {
			return nil, stats, err
		}
	}
	stats.ApproveSeconds = time.Since(t0).Seconds()
	stats.ApproveCPUSeconds = (cputime.Process() - c0).Seconds()
	t0, c0 = time.Now(), cputime.Process()
	req, err := agg.DecryptRequest(online)
	if err != nil {
		return nil, stats, err
	}
	reqBytes, err := req.MarshalBinary()
	if err != nil {
		return nil, stats, err
	}
	stats.RequestBytes = len(reqBytes)
	var memberCPU time.Duration
	for _, id := range req.Active {
		d, err := decryptor(id)
		if err != nil {
			return nil, stats, err
		}
		m0 := cputime.Process()
		share, err := d.ShareEncoded(reqBytes)
		memberCPU += cputime.Process() - m0
		if err != nil {
			return nil, stats, fmt.Errorf("he: member %d: %w", id, err)
		}
		b, err := share.AppendBinary(buf[:0])
		if err != nil {
			return nil, stats, err
		}
		buf = b
		stats.ShareBytes = len(b)
		if err := agg.AddShareEncoded(b); err != nil {
			return nil, stats, err
		}
	}
	stats.MemberShareCPUSeconds = memberCPU.Seconds() / float64(max(len(req.Active), 1))
	res, err := agg.Finish()
	if err != nil {
		return nil, stats, err
	}
	stats.DecryptSeconds = time.Since(t0).Seconds()
	stats.DecryptCPUSeconds = (cputime.Process() - c0).Seconds()
	if res == nil {
		return nil, stats, errors.New("he: no aggregate")
	}
	return res, stats, nil
}
