package store_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoal/store"
	"shoal/store/backend"
)

// crashChildEnv names the store (a file or a PostgreSQL URL) a re-executed test binary commits rounds to until killed.
const crashChildEnv = "SHOAL_STORE_CRASH_CHILD"

// childPatience bounds the wait for a crash child to open the store: far beyond a healthy
// start, even on a loaded machine.
const childPatience = time.Minute

// crashModelSize spans many SQLite pages (and PostgreSQL TOAST chunks), so a torn write would
// show as a mixed model.
const crashModelSize = 60000

// roundModel is the model the crash child commits after round r: every element depends on r,
// so a model mixing two rounds' pages fails the comparison.
func roundModel(r int, out []float32) {
	rng := rand.New(rand.NewPCG(uint64(r), 0x5eed))
	for i := range out {
		out[i] = rng.Float32()*2 - 1
	}
}

func roundStrategyState(r int) []byte {
	return []byte(fmt.Sprintf("momentum-after-%d", r))
}

type crashMetrics struct {
	Round int     `json:"round"`
	Loss  float64 `json:"loss"`
}

// TestCrashChild is the child process of TestKillDuringCommit; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("child process of TestKillDuringCommit")
	}
	if err := crashChild(path); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// crashChild resumes (or starts) the run in path and commits rounds as fast as it can,
// acknowledging each on stdout once CommitRound has returned.
func crashChild(path string) error {
	s, err := backend.Open(context.Background(), path, backend.Create, nil)
	if err != nil {
		return err
	}
	run, _, err := s.LatestRun()
	if errors.Is(err, store.ErrNoRun) {
		if run, err = s.CreateRun([]byte(`{"test":"crash"}`)); err != nil {
			return err
		}
		m := make([]float32, crashModelSize)
		roundModel(0, m)
		if err := s.SaveInitialModel(run, m); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	last, _, _, _, err := s.LastRound(run)
	if err != nil {
		return err
	}
	fmt.Printf("ready %d\n", last)
	model := make([]float32, crashModelSize)
	for r := last + 1; r < 1_000_000; r++ {
		roundModel(r, model)
		metrics, _ := json.Marshal(crashMetrics{Round: r, Loss: 1 / float64(r)})
		acct := []byte(fmt.Sprintf(`{"steps":%d}`, r))
		if err := s.CommitRound(run, r, model, metrics, acct, roundStrategyState(r)); err != nil {
			return err
		}
		fmt.Printf("committed %d\n", r)
	}
	return errors.New("never killed")
}

// TestKillDuringCommit kills a process that commits rounds in a loop with SIGKILL at random
// moments, reopens the store each time and checks that the last round is complete and
// consistent, that no acknowledged round was lost, and that the next round commits. On
// PostgreSQL the reopen also shows that the killed writer's lock went with it.
func TestKillDuringCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	forEachBackend(t, func(t *testing.T, b testBackend) { killDuringCommit(t, b.fresh(t)) })
}

func killDuringCommit(t *testing.T, path string) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill moments seeded with %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	want := make([]float32, crashModelSize)
	// At least minKills kills, whatever the machine's speed; more, up to maxKills, while the
	// time budget lasts. The budget only trims the extra kills: no assertion depends on it.
	const minKills, maxKills = 3, 6
	budget := time.Now().Add(12 * time.Second)
	for i := 0; i < minKills || i < maxKills && time.Now().Before(budget); i++ {
		acked, started := killChildAtRandom(t, path, rng)

		s, err := backend.Open(context.Background(), path, backend.Existing, testLogger(t))
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", i, err)
		}
		run, cfg, err := s.LatestRun()
		if err != nil || string(cfg) != `{"test":"crash"}` {
			t.Fatalf("kill %d: LatestRun: %q %v", i, cfg, err)
		}
		r, model, acct, strat, err := s.LastRound(run)
		if err != nil {
			t.Fatalf("kill %d: LastRound: %v", i, err)
		}
		// Acknowledged rounds are durable; at most the round in flight may also have landed.
		if r < acked || r > acked+1 || r < started {
			t.Fatalf("kill %d: last round %d, child started at %d and acknowledged %d", i, r, started, acked)
		}
		roundModel(r, want)
		if !sameBits(model, want) {
			t.Fatalf("kill %d: model of round %d is not the one committed", i, r)
		}
		if r > 0 {
			if string(acct) != fmt.Sprintf(`{"steps":%d}`, r) || string(strat) != string(roundStrategyState(r)) {
				t.Fatalf("kill %d: round %d state: accountant %q strategy %q", i, r, acct, strat)
			}
		}
		hist, err := s.History(run)
		if err != nil || len(hist) != r {
			t.Fatalf("kill %d: %d history entries for %d rounds: %v", i, len(hist), r, err)
		}
		for j, h := range hist {
			var m crashMetrics
			if err := json.Unmarshal(h, &m); err != nil || m.Round != j+1 {
				t.Fatalf("kill %d: metrics of round %d: %s %v", i, j+1, h, err)
			}
		}
		if i%2 == 0 { // full integrity check now and then; it reads the whole file
			if err := s.Check(); err != nil {
				t.Fatalf("kill %d: %v", i, err)
			}
		}
		// The next round commits; the next child resumes after it.
		roundModel(r+1, want)
		metrics, _ := json.Marshal(crashMetrics{Round: r + 1})
		if err := s.CommitRound(run, r+1, want, metrics, []byte(fmt.Sprintf(`{"steps":%d}`, r+1)), roundStrategyState(r+1)); err != nil {
			t.Fatalf("kill %d: commit after reopen: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d: acknowledged %d, found %d complete", i, acked, r)
	}
}

// killChildAtRandom starts a crash child on path, lets it commit for a random while and kills it
// with SIGKILL. It returns the last round the child acknowledged and the round it resumed from.
func killChildAtRandom(t *testing.T, path string, rng *rand.Rand) (acked, started int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	fail := func(format string, a ...any) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf(format+"; child stderr: %s", append(a, stderr.String())...)
	}
	// The child says it is ready, or exits (closing lines). The watchdog only turns a child
	// hung before that into a failure instead of a hang of the whole test binary.
	watchdog := time.NewTimer(childPatience)
	defer watchdog.Stop()
	select {
	case l, ok := <-lines:
		if !ok || !strings.HasPrefix(l, "ready ") {
			fail("child did not start: %q", l)
		}
		started, _ = strconv.Atoi(strings.TrimPrefix(l, "ready "))
	case <-watchdog.C:
		fail("child not ready after %v", childPatience)
	}
	acked = started
	// The fault injected: SIGKILL at a random moment, sometimes right after start, mostly in
	// the middle of a commit. Any moment must leave a consistent store; no assertion depends
	// on which moment it was, so the moment is drawn on the real clock, where the commits are.
	timer := time.NewTimer(time.Duration(rng.IntN(800)) * time.Millisecond)
	for killed := false; !killed; {
		select {
		case l, ok := <-lines:
			if !ok {
				fail("child exited by itself: %v", cmd.Wait())
			}
			if n, err := strconv.Atoi(strings.TrimPrefix(l, "committed ")); err == nil {
				acked = n
			}
		case <-timer.C:
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				fail("kill: %v", err)
			}
			killed = true
		}
	}
	// Acknowledgements already written before the kill still count.
	for l := range lines {
		if n, err := strconv.Atoi(strings.TrimPrefix(l, "committed ")); err == nil {
			acked = n
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not by SIGKILL; stderr: %s", err, stderr.String())
	}
	return acked, started
}
