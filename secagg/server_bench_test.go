package secagg

import "testing"

// BenchmarkServerKeyRouting measures the server's AdvertiseKeys stage for 500 clients on the
// complete graph: receiving the keys and building every client's key list.
func BenchmarkServerKeyRouting(b *testing.B) {
	n := 500
	cfg := Config{Round: 1, Clients: n, Dim: 10, Bits: 16, ClipRange: 1, MaxWeight: 1,
		Graph: GraphComplete, Degree: n - 1, Threshold: n / 2}
	ads := make([][]byte, n)
	for id := range uint32(n) {
		c, err := NewClient(cfg, id, seeded(1)(id))
		if err != nil {
			b.Fatal(err)
		}
		ads[id], _ = c.Start()
	}
	for b.Loop() {
		s, _ := NewServer(cfg)
		for id, m := range ads {
			if err := s.Receive(ClientID(id), m); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.Advance(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundComplete500Small isolates the server's per-client overheads (500 clients,
// 1,000 entries: the PRG work is negligible).
func BenchmarkRoundComplete500Small(b *testing.B) {
	benchRound(b, 500, 1000, GraphComplete, 0, 0)
}
