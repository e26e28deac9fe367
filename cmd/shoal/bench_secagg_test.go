package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchSecAggJSON(t *testing.T) {
	for _, args := range [][]string{
		{"--clients", "30", "--dim", "500", "--dropout", "0.2", "--graph", "complete", "--dropout-stage", "masked"},
		{"--clients", "40", "--dim", "300", "--dropout", "0.1", "--graph", "harary", "--degree", "14", "--dropout-stage", "unmask", "--seed", "3"},
		{"--clients", "20", "--dim", "100", "--dropout", "0.1", "--graph", "complete", "--malicious", "--max-corrupt", "0.1", "--dropout-stage", "share"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"bench", "secagg", "--json"}, args...), &out, &errb)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		var r secaggBenchJSON
		dec := json.NewDecoder(&out)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%v: output is not one JSON object: %v", args, err)
		}
		if dec.More() {
			t.Fatalf("%v: more than one JSON value on stdout", args)
		}
		wantSurvivors := r.Clients - r.Dropped
		if r.DropoutStage == "unmask" {
			wantSurvivors = r.Clients
		}
		if !r.Correct || r.Survivors != wantSurvivors || r.Completed != r.Clients-r.Dropped {
			t.Fatalf("%v: correct=%v survivors=%d completed=%d dropped=%d", args, r.Correct, r.Survivors, r.Completed, r.Dropped)
		}
		if r.ClientSeconds <= 0 || r.ServerSeconds <= 0 || r.ClientUploadBytes <= float64(r.PlainUploadBytes) {
			t.Fatalf("%v: implausible costs %+v", args, r)
		}
		if r.Threshold < 1 || r.Threshold > r.Degree || r.RingBits != r.Bits+bitsFor(r.Clients) {
			t.Fatalf("%v: degree %d threshold %d ring bits %d", args, r.Degree, r.Threshold, r.RingBits)
		}
		if _, ok := r.Stages["masked"]; !ok {
			t.Fatalf("%v: no masked stage in %v", args, r.Stages)
		}
	}
}

func bitsFor(n int) int {
	b := 0
	for (1 << b) < n {
		b++
	}
	return b
}

func TestBenchSecAggBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--graph", "ring"},
		{"--dropout", "1.5"},
		{"--dropout-stage", "later"},
		{"--clients", "1"},
		{"--graph", "complete", "--clients", "10", "--degree", "4"},
		{"--bits", "30", "--clients", "1000"},
		{"--nonsense"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append([]string{"bench", "secagg"}, args...), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"bench", "secagg", "--clients", "12", "--dim", "50", "--dropout", "0"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "correct: true") {
		t.Fatalf("human-readable run: exit %d, %q %q", code, out.String(), errb.String())
	}
}
