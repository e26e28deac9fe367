package main

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/data"
	"shoal/trainer"
	"shoal/transport/grpctransport"
)

// A client whose file holds a single class trains under the run's class list: its labels are
// renumbered to the server's, its model has the run's class count; a class the run does not
// know, or another architecture, is refused.
func TestLocalModelAdoptsRunClasses(t *testing.T) {
	train := &data.Dataset{Name: "one", X: []float32{1, 2, 3, 4}, Y: []int32{0, 0}, Dim: 2, C: 1, H: 1, W: 2,
		Classes: 1, ClassNames: []string{"malignant"}}
	l, err := newLocalModel("logreg", 1, train, train.X, train.Y, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.local(1, 0); err == nil {
		t.Fatal("a single-class client trained before it knew the run's classes")
	}
	run := grpctransport.ModelSpec{Arch: "logreg", Input: [3]int{1, 1, 2}, LayerSizes: []int{9}, Classes: []string{"benign", "malignant", "other"}}
	if err := l.adopt(run); err != nil {
		t.Fatal(err)
	}
	c, err := l.local(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*trainer.Client)
	if !slices.Equal(tc.Y, []int32{1, 1}) || tc.Model.Classes() != 3 {
		t.Fatalf("labels %v with %d classes, want [1 1] with 3", tc.Y, tc.Model.Classes())
	}
	for _, bad := range []grpctransport.ModelSpec{
		{Arch: "logreg", Input: [3]int{1, 1, 2}, LayerSizes: []int{6}, Classes: []string{"benign", "cat"}},
		{Arch: "2nn", Input: [3]int{1, 1, 2}, LayerSizes: []int{600, 40200, 402}, Classes: []string{"benign", "malignant"}},
		{Arch: "logreg", Input: [3]int{1, 1, 2}, LayerSizes: []int{7}, Classes: []string{"benign", "malignant"}},
	} {
		if err := l.adopt(bad); err == nil {
			t.Errorf("adopted %v", bad)
		}
	}
	if _, err := newLocalModel("resnet", 1, train, train.X, train.Y, nil, nil); err == nil || !strings.Contains(err.Error(), "valid:") {
		t.Fatalf("unknown model: %v", err)
	}
}

// A client with another model than the server's is refused at connect time: it exits non-zero
// naming both models, and the server logs the refusal (issue 13: before, every round was
// abandoned and both exited 0).
func TestClientWithOtherModelRefusedAtConnect(t *testing.T) {
	addr := freeAddr(t)
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", addr, "--out", filepath.Join(t.TempDir(), "run"),
		"--min-clients", "1", "--rounds", "1"}, trainingArgs(2)...)...)
	srv.waitFor("listening on", 60*time.Second)
	c := startProc(t, "client", append([]string{"client", "--server", addr, "--name", "c1", "--insecure", "--partition-index", "0",
		"--max-backoff", "300ms"}, append(trainingArgs(2), "--model", "2nn")...)...)
	err := c.wait(60 * time.Second)
	var exit interface{ ExitCode() int }
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("client exited with %v, want a non-zero exit", err)
	}
	if log := c.log(); !strings.Contains(log, `"2nn"`) || !strings.Contains(log, `"logreg"`) {
		t.Fatalf("client's error does not name both models:\n%s", log)
	}
	srv.waitFor("client refused", 10*time.Second)
}

// A server whose every round was abandoned (here: a learning rate that makes every client's
// training diverge) exits non-zero with the reason instead of reporting an untrained model as
// a success.
func TestServerAllRoundsAbandonedFails(t *testing.T) {
	addr := freeAddr(t)
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", addr, "--out", filepath.Join(t.TempDir(), "run"),
		"--min-clients", "2", "--rounds", "2", "--fraction", "1"}, trainingArgs(2, "--lr", "1e38", "--target-accuracy", "0")...)...)
	startClients(t, addr, "", 2)
	err := srv.wait(90 * time.Second)
	var exit interface{ ExitCode() int }
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("server exited with %v, want a non-zero exit", err)
	}
	if log := srv.log(); !strings.Contains(log, "every round was abandoned") {
		t.Fatalf("server did not say why:\n%s", log)
	}
}
