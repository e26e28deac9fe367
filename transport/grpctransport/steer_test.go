package grpctransport

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"shoal/fl"
	"shoal/internal/testsupport"
)

// Pace steering: a client the server turns away with "come back in d" comes back after d, not
// at its reconnect backoff (milliseconds here), and a server cannot park it longer than
// maxSteer.
func TestClientHonoursPaceSteering(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ask, want time.Duration
	}{{"ten minutes", 10 * time.Minute, 10 * time.Minute}, {"capped", 5 * time.Hour, maxSteer}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var attempts []time.Time
				s, ep := memServer(t, ServerConfig{Steer: func(name string, connected int) time.Duration {
					mu.Lock()
					defer mu.Unlock()
					attempts = append(attempts, time.Now())
					if len(attempts) == 1 {
						return tc.ask
					}
					return 0
				}})
				startClient(t, ep, "paced", func(int, fl.ClientID) (fl.Client, error) { return &testsupport.Trainer{N: 1}, nil }, nil)
				start := time.Now()
				time.Sleep(tc.want - time.Second)
				synctest.Wait()
				mu.Lock()
				early := len(attempts)
				mu.Unlock()
				if early != 1 || len(s.Connected()) != 0 {
					t.Fatalf("%d attempts, %d connected before the window: the client came back early", early, len(s.Connected()))
				}
				time.Sleep(2 * time.Second)
				synctest.Wait()
				mu.Lock()
				defer mu.Unlock()
				if len(attempts) != 2 || len(s.Connected()) != 1 {
					t.Fatalf("%d attempts, %d connected after the window", len(attempts), len(s.Connected()))
				}
				if back := attempts[1].Sub(start); back < tc.want || back > tc.want+time.Second {
					t.Fatalf("came back after %v, asked %v", back, tc.ask)
				}
			})
		})
	}
}

// Attack: a server (or edge) answers every connection with "come back in 1 ms", to spin its
// devices in a reconnect loop (a load on the devices and on every server of their list). The
// client waits at least minSteer between attempts.
func TestAttackSteeringInATightLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		attempts := 0
		_, ep := memServer(t, ServerConfig{Steer: func(string, int) time.Duration {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			return time.Millisecond
		}})
		startClient(t, ep, "spun", func(int, fl.ClientID) (fl.Client, error) { return &testsupport.Trainer{N: 1}, nil }, nil)
		const window = 10 * time.Second
		time.Sleep(window)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if most := int(window/minSteer) + 1; attempts > most {
			t.Fatalf("%d connections in %v, at most %d allowed by a floor of %v", attempts, window, most, minSteer)
		}
	})
}
