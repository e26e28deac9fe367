package secagg

import (
	"crypto/ed25519"
	"errors"
	"math"
	"testing"
)

func validConfig() Config {
	return Config{Round: 1, Clients: 10, Dim: 5, Bits: 8, ClipRange: 1, MaxWeight: 1,
		Graph: GraphHarary, Degree: 4, Threshold: 3}
}

func TestConfigValidate(t *testing.T) {
	if c := validConfig(); c.Validate() != nil {
		t.Fatal(c.Validate())
	}
	bad := map[string]func(*Config){
		"one client":         func(c *Config) { c.Clients = 1 },
		"zero dim":           func(c *Config) { c.Dim = 0 },
		"zero bits":          func(c *Config) { c.Bits = 0 },
		"ring over 32 bits":  func(c *Config) { c.Bits = 29 },
		"NaN clip":           func(c *Config) { c.ClipRange = math.NaN() },
		"infinite weight":    func(c *Config) { c.MaxWeight = math.Inf(1) },
		"odd Harary degree":  func(c *Config) { c.Degree = 3 },
		"degree too large":   func(c *Config) { c.Degree = 10 },
		"complete degree":    func(c *Config) { c.Graph = GraphComplete },
		"unknown graph":      func(c *Config) { c.Graph = 9 },
		"threshold 0":        func(c *Config) { c.Threshold = 0 },
		"threshold > degree": func(c *Config) { c.Threshold = 5 },
		"verify keys count":  func(c *Config) { c.VerifyKeys = make([]ed25519.PublicKey, 3) },
		"verify key size":    func(c *Config) { c.VerifyKeys = make([]ed25519.PublicKey, 10) },
	}
	for name, mutate := range bad {
		c := validConfig()
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := NewServer(c); err == nil {
			t.Errorf("%s: server accepted", name)
		}
	}
	if c := validConfig(); c.RingBits() != 8+4 {
		t.Fatalf("ring bits %d, want 12", c.RingBits())
	}
}

func TestPlanThreshold(t *testing.T) {
	th, err := PlanThreshold(100, 14, 0.1, GraphHarary)
	if err != nil || th < 1 || th > 14 {
		t.Fatalf("t=%d err=%v", th, err)
	}
	if th2, _ := PlanThreshold(100, 14, 0.3, GraphHarary); th2 >= th {
		t.Fatalf("more dropout gave threshold %d ≥ %d", th2, th)
	}
	if th, _ := PlanThreshold(100, 99, 0.1, GraphComplete); th != 89 {
		t.Fatalf("complete threshold %d, want 89", th)
	}
	for _, c := range []struct {
		n, k int
		d    float64
	}{{1, 1, 0}, {10, 10, 0}, {10, 4, 1}, {10, 2, 0.9}} {
		if _, err := PlanThreshold(c.n, c.k, c.d, GraphHarary); err == nil {
			t.Errorf("PlanThreshold(%d, %d, %v) accepted", c.n, c.k, c.d)
		}
	}
}

// The engine's view: Ready and Waiting follow answers and MarkDropped; Result fails until done.
func TestServerReadinessAndEarlyResult(t *testing.T) {
	cfg := Config{Round: 1, Clients: 4, Dim: 2, Bits: 4, ClipRange: 1, MaxWeight: 1,
		Graph: GraphComplete, Degree: 3, Threshold: 2}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Result(); err == nil {
		t.Fatal("result before the round ran")
	}
	c0, _ := NewClient(cfg, 0, seeded(1)(0))
	m0, _ := c0.Start()
	if err := s.Receive(0, m0); err != nil {
		t.Fatal(err)
	}
	if s.Ready() {
		t.Fatal("ready with three clients missing")
	}
	if w := s.Waiting(); len(w) != 3 || w[0] != 1 {
		t.Fatalf("waiting %v", w)
	}
	s.MarkDropped(1)
	s.MarkDropped(2)
	s.MarkDropped(3)
	if !s.Ready() || len(s.Waiting()) != 0 {
		t.Fatal("not ready after the others were marked dropped")
	}
	c3, _ := NewClient(cfg, 3, seeded(1)(3))
	m3, _ := c3.Start()
	if err := s.Receive(3, m3); !errors.Is(err, ErrWrongParty) {
		t.Fatalf("message from a dropped client: %v", err)
	}
	if _, err := s.Advance(); !errors.Is(err, ErrAbandoned) {
		t.Fatalf("one client left of four with t=2: %v", err)
	}
	if _, err := s.Result(); !errors.Is(err, ErrAbandoned) {
		t.Fatalf("result of an abandoned round: %v", err)
	}
	if err := s.Receive(0, m0); !errors.Is(err, ErrOutOfStage) {
		t.Fatalf("message after abandonment: %v", err)
	}
}

func TestServerRejectsBadKeys(t *testing.T) {
	cfg := Config{Round: 1, Clients: 4, Dim: 2, Bits: 4, ClipRange: 1, MaxWeight: 1,
		Graph: GraphComplete, Degree: 3, Threshold: 2}
	s, _ := NewServer(cfg)
	same := &message{Header: Header{Type: MsgAdvertiseKeys, Round: 1, Sender: 0, Recipient: ServerID}}
	same.channel[0], same.msk[0] = 7, 7
	if err := s.Receive(0, same.encode()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("equal channel and masking keys: %v", err)
	}
	signed := &message{Header: same.Header, sig: make([]byte, signatureSize)}
	signed.msk[0] = 1
	if err := s.Receive(0, signed.encode()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("signature in the semi-honest variant: %v", err)
	}
	sk := ed25519.NewKeyFromSeed(make([]byte, 32))
	cfg.VerifyKeys = []ed25519.PublicKey{sk.Public().(ed25519.PublicKey), sk.Public().(ed25519.PublicKey), sk.Public().(ed25519.PublicKey), sk.Public().(ed25519.PublicKey)}
	ms, _ := NewServer(cfg)
	if err := ms.Receive(0, signed.encode()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad signature in the malicious variant: %v", err)
	}
	if _, err := NewClient(cfg, 0, seeded(1)(0)); err == nil {
		t.Fatal("malicious-variant client without a signing key")
	}
	wrong := ed25519.NewKeyFromSeed(append(make([]byte, 31), 1))
	if _, err := NewClient(cfg, 0, seeded(1)(0), WithSigningKey(wrong)); err == nil {
		t.Fatal("client accepted a signing key that is not in the PKI")
	}
}
