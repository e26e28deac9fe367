package secagg_test

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"shoal/secagg"
)

// Example drives the client and server state machines the way an engine does: it moves the
// bytes, decides that client 2 dropped after ShareKeys, and reads the decoded sum.
func Example() {
	const n = 5
	degree, threshold, err := secagg.PlanGraph(n, 0.2, 0, secagg.GraphComplete, false)
	if err != nil {
		panic(err)
	}
	cfg := secagg.Config{Round: 1, Clients: n, Dim: 3, Bits: 16, ClipRange: 1, MaxWeight: 100,
		Graph: secagg.GraphComplete, Degree: degree, Threshold: threshold}
	server, _ := secagg.NewServer(cfg)
	clients := make([]*secagg.Client, n)
	for id := range secagg.ClientID(n) {
		// Real runs pass crypto/rand.Reader; a seeded source keeps this example reproducible.
		clients[id], _ = secagg.NewClient(cfg, id, rand.NewChaCha8([32]byte{byte(id)}))
		_ = clients[id].SetInput([]float32{0.5, -0.25, float32(id) / 10}, 10)
		msg, _ := clients[id].Start()
		_ = server.Receive(id, msg)
	}
	out, err := server.Advance()
	for len(out) > 0 && err == nil {
		for _, o := range out {
			if o.To == 2 && server.Stage() == secagg.StageMasked {
				server.MarkDropped(2) // the engine's timeout fired
				continue
			}
			reply, err := clients[o.To].Handle(o.Data)
			if errors.Is(err, secagg.ErrAborted) {
				server.MarkDropped(o.To)
				continue
			}
			_ = server.Receive(o.To, reply)
		}
		out, err = server.Advance()
	}
	res, err := server.Result()
	if err != nil {
		panic(err)
	}
	fmt.Printf("survivors %v\n", res.Survivors)
	fmt.Printf("sum %.2f %.2f %.2f, weight %.0f\n", res.Sum[0], res.Sum[1], res.Sum[2], res.Weight)
	// Output:
	// survivors [0 1 3 4]
	// sum 2.00 -1.00 0.80, weight 40
}
