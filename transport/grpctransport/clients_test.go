package grpctransport

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"shoal/internal/testsupport"
)

// Clients reports each client's rounds, failures and why, and its session times, and nothing
// a client sent in a result: a dashboard built on it cannot single out an update.
func TestClientsStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ep := memServer(t, ServerConfig{})
		startClient(t, ep, "slow", testsupport.Trainers(1, blocked(make(chan struct{}))), nil)
		startClient(t, ep, "fast", trainers, nil)
		testsupport.WaitClients(t, s, 2)
		e := testsupport.Engine(t, s, 1)
		e.Config.RoundTimeout = 10 * time.Second
		rep, err := runRound(t, e, 1, make([]float32, 8))
		if err != nil || rep.Participants != 1 || rep.Stragglers != 1 {
			t.Fatalf("round: %+v, %v (want one participant, one straggler)", rep, err)
		}
		got := s.Clients()
		if len(got) != 2 || got[0].Name != "fast" || got[1].Name != "slow" {
			t.Fatalf("clients %+v", got)
		}
		fast, slow := got[0], got[1]
		if !fast.Connected || fast.RoundsJoined != 1 || fast.LastRound != 1 || fast.Failures != 0 || fast.Sessions != 1 {
			t.Fatalf("fast client %+v", fast)
		}
		if slow.RoundsJoined != 0 || slow.Failures != 1 || !strings.Contains(slow.LastFailure, "round 1, fit") {
			t.Fatalf("slow client %+v", slow)
		}
		if fast.ConnectedSince.IsZero() || fast.LastSeen.Before(fast.ConnectedSince) {
			t.Fatalf("session times %+v", fast)
		}
		b, _ := json.Marshal(got)
		for _, field := range []string{"loss", "accuracy", "examples", "update", "norm"} {
			if strings.Contains(strings.ToLower(string(b)), field) {
				t.Fatalf("client status carries %q: %s", field, b)
			}
		}
	})
}
