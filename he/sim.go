package he

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"shoal/internal/cputime"
	"time"
)

// RunCeremony runs a whole key ceremony in-process: the server's and every member's state
// machines, with every message passed through its wire encoding as the engine would.
// It returns the public setup and each member's key material.
func RunCeremony(params *Params, committee []PartyID, threshold int, random io.Reader) (*PublicSetup, map[PartyID]*KeyMaterial, error) {
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
		m, msg, err := JoinCeremony(memberView, id, random)
		if err != nil {
			return nil, nil, fmt.Errorf("he: member %d joining: %w", id, err)
		}
		members[id] = m
		if err := relay(msg, params, DecodeKeyGenShare, server.HandleKeyGenShare); err != nil {
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
		d, err := DecodeDirectory(params, dirBytes)
		if err != nil {
			return nil, nil, err
		}
		sealed, err := members[id].HandleDirectory(d)
		if err != nil {
			return nil, nil, fmt.Errorf("he: member %d: %w", id, err)
		}
		for _, s := range sealed {
			if err := relay(s, params, DecodeSealedShare, server.HandleSealedShare); err != nil {
				return nil, nil, err
			}
		}
	}
	keys := make(map[PartyID]*KeyMaterial, len(committee))
	for _, id := range committee {
		boxes, err := server.SharesFor(id)
		if err != nil {
			return nil, nil, err
		}
		km, err := members[id].HandleSealedShares(boxes)
		if err != nil {
			return nil, nil, fmt.Errorf("he: member %d: %w", id, err)
		}
		keys[id] = km
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

// Update is one client's plaintext contribution to a round.
type Update struct {
	Values []float32
	Weight float64
}

// RoundStats measures one in-process round.
type RoundStats struct {
	Uploads          int
	EncryptSeconds   float64 // total over clients
	AggregateSeconds float64 // decoding and adding every upload
	DecryptSeconds   float64 // request, shares, combination and decoding
	// CPU time (user+system, all threads) of the same phases: robust on a busy machine.
	EncryptCPUSeconds   float64
	AggregateCPUSeconds float64
	DecryptCPUSeconds   float64
	UploadBytes         int // of one upload
	RequestBytes        int
	ShareBytes          int // of one member's share
}

// RunRound runs one encrypted round in-process: every update yielded is encrypted,
// encoded and streamed into the aggregator (clients that dropped before upload are
// simply not yielded), then the members in online (committee members still reachable)
// decrypt the aggregate. Fewer than threshold online members returns
// ErrNotEnoughMembers with nothing decrypted.
func RunRound(setup *PublicSetup, keys map[PartyID]*KeyMaterial, round uint64, dim int,
	updates iter.Seq2[PartyID, Update], online []PartyID) (*Aggregate, *RoundStats, error) {
	agg, err := NewAggregator(setup, round, dim)
	if err != nil {
		return nil, nil, err
	}
	enc, err := NewEncryptor(setup)
	if err != nil {
		return nil, nil, err
	}
	stats := &RoundStats{}
	var buf []byte // one client's send buffer, reused
	for id, u := range updates {
		t0, c0 := time.Now(), cputime.Process()
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
	t0, c0 := time.Now(), cputime.Process()
	req, err := agg.DecryptRequest(online)
	if err != nil {
		return nil, stats, err
	}
	reqBytes, err := req.MarshalBinary()
	if err != nil {
		return nil, stats, err
	}
	stats.RequestBytes = len(reqBytes)
	for _, id := range req.Active {
		km := keys[id]
		if km == nil {
			return nil, stats, fmt.Errorf("he: no key material for active member %d", id)
		}
		dec, err := NewDecryptor(km)
		if err != nil {
			return nil, stats, err
		}
		share, err := dec.ShareEncoded(reqBytes)
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
