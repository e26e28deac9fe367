package securesum

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"shoal/fl"
	"shoal/privacy"
)

// Spec is a run's secure-sum configuration: what the server builds its half from and what it
// announces to every client, which builds its own half from the same Spec (FromWire). One Spec
// carries the parameters of every backend; each reads its own.
type Spec struct {
	// SecAgg and SecAgg+.
	Bits       int     `json:"bits"`        // quantisation bits per entry (default 16)
	ClipRange  float64 `json:"clip_range"`  // entries clipped to ±ClipRange (default 0.5)
	MaxDropout float64 `json:"max_dropout"` // tolerated dropout fraction
	MaxCorrupt float64 `json:"max_corrupt"` // tolerated fraction of clients colluding with the server
	Degree     int     `json:"degree"`      // SecAgg+: forced graph degree (0: planned)
	// AllowWeakDegree keeps a forced degree that fails the dropout or corruption bounds; the run
	// then claims no statistical security (SecAggOptions.AllowWeakDegree).
	AllowWeakDegree bool `json:"allow_weak_degree,omitempty"`
	// RunID (16 bytes, or empty) identifies the run: the server draws it once per run and
	// announces it; every SecAgg signature and derived key binds it, and a client refuses a setup
	// message of another run. Empty at the server: drawn at random (SecAggOptions.RunID).
	RunID []byte `json:"run_id,omitempty"`
	// DDP, if set, turns SecAgg into distributed DP: each client rotates, scales, rounds and
	// noises its clipped update itself (privacy.DDPParams.Encode) before masking it, so that the
	// only sum the server unmasks already carries the full noise. Bits must equal DDP.Bits.
	DDP *privacy.DDPConfig `json:"ddp,omitempty"`
	// Threshold HE.
	Committee int `json:"he_committee"`
	Threshold int `json:"he_threshold"`
	// Rand, if set, gives each (round, party) reproducible randomness (id −1 is the server):
	// for seeded simulations only. It is never sent: a client builds its half with crypto/rand.
	Rand func(round int, id fl.ClientID) io.Reader `json:"-"`
}

// backends are the secure-sum protocols by name: a new backend is one line here.
var backends = map[string]func(Spec) (fl.SecureSum, error){
	"secagg":     func(s Spec) (fl.SecureSum, error) { return newSecAggFromSpec(false, s) },
	"secaggplus": func(s Spec) (fl.SecureSum, error) { return newSecAggFromSpec(true, s) },
	"he": func(s Spec) (fl.SecureSum, error) {
		if s.DDP != nil {
			return nil, errors.New("he: distributed DP needs an integer secure sum (secagg or secaggplus); threshold CKKS sums approximate reals")
		}
		return NewHE(HEOptions{Committee: s.Committee, Threshold: s.Threshold, Rand: s.Rand})
	},
}

func newSecAggFromSpec(plus bool, s Spec) (fl.SecureSum, error) {
	o := SecAggOptions{Plus: plus, Bits: s.Bits, ClipRange: s.ClipRange, MaxDropout: s.MaxDropout,
		MaxCorrupt: s.MaxCorrupt, Degree: s.Degree, AllowWeakDegree: s.AllowWeakDegree, Rand: s.Rand, DDP: s.DDP}
	switch len(s.RunID) {
	case 0:
	case len(o.RunID):
		copy(o.RunID[:], s.RunID)
		if o.RunID == ([16]byte{}) { // read as "none": the client would accept any run's setup
			return nil, errors.New("secagg: the all-zero run id is not a run id")
		}
	default:
		return nil, fmt.Errorf("secagg: run id of %d bytes, want %d", len(s.RunID), len(o.RunID))
	}
	return NewSecAgg(o)
}

// Names lists the secure-sum protocols New knows, sorted.
func Names() []string {
	names := make([]string, 0, len(backends))
	for k := range backends {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// New builds the named protocol from spec: the server's and, through FromWire, every client's.
func New(name string, spec Spec) (fl.SecureSum, error) {
	build, ok := backends[name]
	if !ok {
		return nil, fmt.Errorf("unknown secure-sum protocol %q", name)
	}
	return build(spec)
}

// Wire encodes the spec as the server announces it to clients.
func (s Spec) Wire() ([]byte, error) { return json.Marshal(s) }

// FromWire builds a client's copy of the protocol the server announced, with crypto/rand.
func FromWire(name string, params []byte) (fl.SecureSum, error) {
	var s Spec
	if err := json.Unmarshal(params, &s); err != nil {
		return nil, fmt.Errorf("parameters of %s: %w", name, err)
	}
	return New(name, s)
}
