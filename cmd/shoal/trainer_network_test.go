package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/report"
)

// Over the network, a server and three clients that all run the NumPy example trainer
// (`--trainer`) federate MNIST: the server's trainer supplies the initial model and evaluates
// every round, each client's trainer fits its 600-example shard, and the model learns.
func TestNetworkRunWithTrainer(t *testing.T) {
	const clients, rounds = 3, 3
	trainerCmd := numpyTrainer(t)
	addr := freeAddr(t)
	out := filepath.Join(t.TempDir(), "run")
	// 100 shards of 600 examples: the clients take shards 0, 1 and 2.
	federation := []string{"--dataset", "mnist", "--clients", "100", "--seed", "7", "--trainer", trainerCmd}
	srv := startProc(t, "server", append([]string{"server", "--listen", addr, "--insecure", "--out", out,
		"--wait-clients", fmt.Sprint(clients), "--min-clients", fmt.Sprint(clients), "--fraction", "0.03",
		"--rounds", fmt.Sprint(rounds), "--lr", "0.05", "--target-accuracy", "0", "--json",
		"--fit-timeout", "20s", "--wait-timeout", "20s", "--heartbeat", "1s"}, federation...)...)
	procs := map[string]*proc{}
	for i, name := range clientNames(clients) {
		procs[name] = startProc(t, name, append([]string{"client", "--server", addr, "--insecure", "--name", name,
			"--partition-index", fmt.Sprint(i), "--max-backoff", "300ms"}, federation...)...)
	}
	for name, p := range procs {
		line := p.waitFor("trainer", 20*time.Second)
		want := fmt.Sprintf("on shard %s of mnist (600 examples)", strings.TrimPrefix(name, "c"))
		if !strings.Contains(line, "examples/numpy-logreg/trainer.py") || !strings.Contains(line, want) {
			t.Fatalf("client %s does not train with the example trainer on its shard: %s", name, line)
		}
	}
	if err := srv.wait(25 * time.Second); err != nil {
		t.Fatalf("server: %v\n%s", err, srv.log())
	}
	for name, p := range procs {
		if err := p.wait(10 * time.Second); err != nil {
			t.Fatalf("client %s: %v\n%s", name, err, p.log())
		}
	}
	s := decodeSummary(t, srv.stdout.Bytes())
	if s.RoundsRun != rounds || len(s.History) != rounds {
		t.Fatalf("rounds: %+v", s)
	}
	for _, h := range s.History {
		t.Logf("round %d: accuracy %.4f, loss %.4f, %d participants", h.Round, h.Accuracy, h.Loss, h.Participants)
		if h.Participants != clients || h.Dropped != 0 {
			t.Fatalf("round %d: %d participants, %d dropped (want all %d)", h.Round, h.Participants, h.Dropped, clients)
		}
	}
	// A 10-class model starts near 0.1; three rounds on 1,800 examples reach about 0.85.
	if first, last := s.History[0], s.History[rounds-1]; s.FinalAccuracy < 0.8 || !(last.Loss < first.Loss) {
		t.Fatalf("did not learn: final accuracy %.4f, loss %.4f after round 1 and %.4f after round %d",
			s.FinalAccuracy, first.Loss, last.Loss, rounds)
	}
	saved, err := report.ReadModelFile(filepath.Join(out, "model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if saved.Info.Trainer != "numpy-logreg" || saved.Info.Arch != "external" || len(saved.Params) != 7850 {
		t.Fatalf("the server's model is not the trainer's: %+v, %d parameters", saved.Info, len(saved.Params))
	}
}
