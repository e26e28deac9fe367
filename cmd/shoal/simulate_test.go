package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func shoal(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// The --json contract: stdout carries exactly one JSON object with the documented keys.
func TestSimulateJSONContract(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := shoal(t, "simulate", "--dataset", "synthetic", "--model", "logreg", "--clients", "20",
		"--fraction", "0.5", "--rounds", "3", "--lr", "0.05", "--seed", "7", "--json", "--out", dir, "--target-accuracy", "0.99")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout has more than one JSON value:\n%s", stdout)
	}
	for _, k := range []string{"rounds_run", "rounds_to_target", "final_accuracy", "final_loss", "seconds", "history"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("summary lacks %q: %s", k, stdout)
		}
	}
	var s simSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.RoundsRun != 3 || len(s.History) != 3 || s.RoundsToTarget != nil || string(raw["rounds_to_target"]) != "null" {
		t.Fatalf("unexpected summary: %+v", s)
	}
	for i, h := range s.History {
		if h.Round != i+1 || h.Participants != 10 || h.Accuracy <= 0 || h.Accuracy > 1 || h.Seconds <= 0 {
			t.Fatalf("history[%d] = %+v", i, h)
		}
	}
	if !strings.Contains(stderr, "round   3/3") {
		t.Fatalf("no per-round progress on stderr:\n%s", stderr)
	}
	for _, f := range []string{"config.toml", "metrics.csv", "metrics.png", "model.bin", "summary.json"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Fatalf("run directory lacks %s: %v", f, err)
		}
	}
}

func TestSimulateConfigFileAndTarget(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "run.toml")
	os.WriteFile(cfg, []byte("dataset = \"synthetic\"\nmodel = \"logreg\"\nclients = 10\nfraction = 1.0\nrounds = 50\nlr = 0.05\nseed = 3\ntarget-accuracy = 0.3\n"), 0o644)
	code, stdout, stderr := shoal(t, "simulate", "--config", cfg, "--json", "--out", filepath.Join(dir, "run"), "--rounds", "40")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var s simSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.RoundsToTarget == nil || *s.RoundsToTarget != s.RoundsRun || s.FinalAccuracy < 0.3 {
		t.Fatalf("should stop at the first round reaching 30%%: %+v", s)
	}
	os.WriteFile(cfg, []byte("no-such-flag = 1\n"), 0o644)
	if code, _, stderr := shoal(t, "simulate", "--config", cfg); code != 2 || !strings.Contains(stderr, "unknown key") {
		t.Fatalf("unknown config key: exit %d, %s", code, stderr)
	}
}

func TestSimulateBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("a,b,label\n1,2,x\n3,oops,y\n"), 0o644)
	tiny := filepath.Join(dir, "tiny.csv")
	os.WriteFile(tiny, []byte("a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n9,1,x\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", "resnet"}, "2nn"},
		{[]string{"--dataset", "imagenet"}, "valid: mnist, csv, synthetic"},
		{[]string{"--dataset", "synthetic", "--strategy", "fedmagic"}, "fedavg"},
		{[]string{"--dataset", "synthetic", "--partition", "stripes"}, ""},
		{[]string{"--dataset", "csv", "--data", bad}, "line 3"},
		{[]string{"--dataset", "csv", "--data", tiny, "--clients", "50"}, "clients"},
		{[]string{"--dataset", "synthetic", "--lr", "-1"}, "learning rate"},
		{[]string{"--dataset", "synthetic", "--fraction", "0"}, "fraction"},
		{[]string{"--dataset", "synthetic", "--dropout", "1.5"}, "dropout"},
		{[]string{"--rounds", "0"}, "rounds"},
	} {
		code, _, stderr := shoal(t, append([]string{"simulate", "--out", dir}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, stderr := shoal(t, "simulat"); code != 2 || !strings.Contains(stderr, "simulate") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
