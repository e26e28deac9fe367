package securesum

import (
	"encoding/json"
	"errors"
	"fmt"

	"shoal/fl"
	"shoal/he"
	"shoal/pki"
)

// Local is what a deployment process holds itself and never takes from the server: a client's
// identity (its certificate and key) and the trust root every party's certificate is verified
// against (threshold HE), and the client's own floors for every protocol. The server announces
// the committee, cohort and threshold (Spec, and each round's setup); the floors keep a
// misbehaving server from announcing its way around them.
type Local struct {
	Identity *he.Identity // the client's; nil on the server
	Trust    he.Trust     // e.g. pki.LoadClientVerifier(certsDir)
	// MinContributors: a committee member decrypts only sums of at least this many distinct
	// signed uploads; the server abandons rounds with fewer (0: he.DefaultMinContributors).
	// SecAgg: a client refuses to mask its update in a round among fewer clients.
	MinContributors int
	// MinThreshold: a client refuses a ceremony or setup with a lower threshold (0: 2); SecAgg:
	// a round whose Shamir threshold is lower.
	MinThreshold int
	// TrustedCommittee: if set, the only certified names a client accepts on the committee.
	TrustedCommittee []string
	// DDP, if set, is the distributed-DP noise a SecAgg client requires of every round: it
	// refuses a round with less noise, or with its noise split among more shares, or without
	// distributed DP at all.
	DDP *DDPPolicy
}

// LoadClient is the Local of client name in a certificate directory laid out by package
// pki: its certificate and key (clients/NAME.pem, NAME-key.pem) and the CA certificate
// (ca.pem) as the trust root.
func LoadClient(certsDir, name string) (Local, error) {
	cert, key, err := pki.LoadClientIdentity(certsDir, name)
	if err != nil {
		return Local{}, err
	}
	v, err := pki.LoadClientVerifier(certsDir)
	if err != nil {
		return Local{}, err
	}
	return Local{Identity: &he.Identity{Certificate: cert, Key: key}, Trust: v}, nil
}

// LoadServer is the server's Local: the CA certificate of a certificate directory as the
// root the server checks uploads and approvals against before relaying them.
func LoadServer(certsDir string) (Local, error) {
	v, err := pki.LoadClientVerifier(certsDir)
	if err != nil {
		return Local{}, err
	}
	return Local{Trust: v}, nil
}

// InsecureClient is a client's Local for a run without certificates (--insecure, testing
// only): a throwaway self-signed identity, and a trust that accepts any self-signed one. It
// keeps the protocol's shape and protects nothing against the server.
func InsecureClient(name string) (Local, error) {
	cert, key, err := pki.SelfSignedClient(name)
	if err != nil {
		return Local{}, err
	}
	return Local{Identity: &he.Identity{Certificate: cert, Key: key}, Trust: pki.InsecureClientVerifier{}}, nil
}

// InsecureServer is the server's Local for a run without certificates (testing only).
func InsecureServer() Local { return Local{Trust: pki.InsecureClientVerifier{}} }

// NewHEFromSpec builds the threshold-HE protocol of spec for a deployment process: the
// server (local without Identity) or a client (with its Identity).
func NewHEFromSpec(spec Spec, local Local) (*HE, error) {
	if local.Trust == nil {
		return nil, errors.New("he: a deployment process needs its own trust root (the CA certificate)")
	}
	return NewHE(HEOptions{Committee: spec.Committee, Threshold: spec.Threshold, Rand: spec.Rand,
		Identity: local.Identity, Trust: local.Trust, MinContributors: local.MinContributors, MinThreshold: local.MinThreshold,
		TrustedCommittee: local.TrustedCommittee})
}

// FromWireLocal is FromWire for a deployment client: "he" is built with the client's own
// identity and trust root (FromWire alone would simulate every client with an in-memory CA,
// and refuse the run's real signatures), SecAgg with the client's floors on cohort and
// threshold; every other protocol as FromWire builds it.
func FromWireLocal(local Local) func(name string, params []byte) (fl.SecureSum, error) {
	return func(name string, params []byte) (fl.SecureSum, error) {
		if name == "secagg" || name == "secaggplus" {
			p, err := FromWire(name, params)
			if err != nil {
				return nil, err
			}
			sa := p.(*SecAgg)
			sa.require(local.MinContributors, local.MinThreshold)
			if local.DDP != nil {
				if err := sa.RequireDDP(*local.DDP); err != nil {
					return nil, err
				}
			}
			return p, nil
		}
		if name != "he" {
			return FromWire(name, params)
		}
		if local.Identity == nil {
			return nil, errors.New("he: a deployment client needs its own certificate and key")
		}
		var s Spec
		if err := json.Unmarshal(params, &s); err != nil {
			return nil, fmt.Errorf("parameters of %s: %w", name, err)
		}
		s.Rand = nil // never seeded from the wire
		return NewHEFromSpec(s, local)
	}
}
