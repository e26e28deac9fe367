package ui

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"shoal/fl"
)

// The events stream pushes each round as the engine reports it, then the final state, and
// ends; a finished run's stream ends at once.
func TestEventsFollowTheEngine(t *testing.T) {
	live, err := NewLive(LiveInfo{ID: "run", Rounds: 2, Config: []byte("rounds = 2\ndp = \"central\"\nmax-epsilon = 5.0\ndelta = 1e-5\n")})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(live)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/runs/run/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(prefix string) string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-deadline:
				t.Fatalf("no %q", prefix)
			}
		}
	}
	expect("event: update") // the waiting state
	live.Round(fl.RoundReport{Round: 1, Accuracy: 0.5, Epsilon: 1.25, Delta: 1e-5, Stages: []fl.StageTime{{Stage: "fit", Seconds: 0.1}}})
	expect("event: round")
	if d := expect("data: "); !strings.Contains(d, `"round":1`) || !strings.Contains(d, `"epsilon":1.25`) {
		t.Fatalf("round event %s", d)
	}
	live.Round(fl.RoundReport{Round: 2, Accuracy: 0.6, Epsilon: 2, Delta: 1e-5})
	live.Finish("", nil)
	expect("id: 2")
	expect("event: end")
	if s := live.Snapshot(); s.State != StateDone || s.Round != 2 || !s.DP || s.MaxEpsilon != 5 {
		t.Fatalf("final snapshot %+v", s)
	}
}
