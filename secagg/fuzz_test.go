package secagg

import (
	"testing"
)

// FuzzStateMachines feeds arbitrary bytes to a server and a client at every stage of a small
// round: they must never panic, and a rejected message must leave the round able to finish.
func FuzzStateMachines(f *testing.F) {
	for _, m := range sampleMessages(f) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newSmallCluster(t, 6, false)
		inject := func() {
			h, err := Peek(data)
			from := uint32(0)
			if err == nil && h.Sender < 6 {
				from = h.Sender
			}
			if c.srv.Receive(from, data) == nil {
				t.Skip("fuzz input accepted as a genuine message; the honest round can no longer be compared")
			}
			if _, err := c.clients[0].Handle(data); err == nil {
				t.Skip("fuzz input accepted by a client")
			}
		}
		var out []Outgoing
		for id, cl := range c.clients {
			if id == 0 {
				inject()
			}
			m, err := cl.Start()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.srv.Receive(ClientID(id), m); err != nil {
				t.Fatal(err)
			}
		}
		out, err := c.srv.Advance()
		if err != nil {
			t.Fatal(err)
		}
		for len(out) > 0 {
			inject()
			out, _ = c.step(t, out)
		}
		if _, err := c.srv.Result(); err != nil {
			t.Fatal(err)
		}
	})
}
