package grpctransport

import (
	"testing"
	"time"

	"shoal/fl"
	"shoal/internal/testsupport"
)

// A client given a list of servers (a tier's edges) connects to one, and when that one goes
// away, to another.
func TestClientMovesToAnotherServerOfTheList(t *testing.T) {
	a, epA := tcpServer(t, ServerConfig{Heartbeat: 200 * time.Millisecond})
	b, epB := tcpServer(t, ServerConfig{Heartbeat: 200 * time.Millisecond})
	startClient(t, endpoint{target: epA.target + "," + epB.target}, "roamer",
		func(int, fl.ClientID) (fl.Client, error) { return &testsupport.Trainer{N: 1}, nil }, nil)
	deadline := time.Now().Add(10 * time.Second)
	on := func() *Server {
		for time.Now().Before(deadline) {
			switch {
			case len(a.Connected()) == 1:
				return a
			case len(b.Connected()) == 1:
				return b
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("the client joined neither server")
		return nil
	}
	first := on()
	other := a
	if first == a {
		other = b
	}
	first.Close(false, "edge stopped", time.Second)
	for len(other.Connected()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the client did not move to the other server of its list")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
