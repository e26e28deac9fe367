package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchHEJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"bench", "he", "--clients", "6", "--committee", "4", "--threshold", "3",
		"--dim", "9000", "--dropout", "0.2", "--committee-offline", "1", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got map[string]any
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Fatal("more than one JSON value on stdout")
	}
	for _, key := range []string{"correct", "max_abs_error", "security_bits", "log_n", "log_qp", "setup_seconds",
		"client_encrypt_seconds", "server_aggregate_seconds", "decrypt_seconds", "client_upload_bytes", "plain_upload_bytes"} {
		if _, ok := got[key]; !ok {
			t.Errorf("missing %q", key)
		}
	}
	if got["correct"] != true {
		t.Fatalf("not correct: %v", got)
	}
	if got["security_bits"].(float64) < 128 {
		t.Fatalf("security %v", got["security_bits"])
	}
	if e := got["max_abs_error"].(float64); e > 1e-6 {
		t.Fatalf("mean error %v", e)
	}
	if got["plain_upload_bytes"].(float64) != 4*9000 {
		t.Fatalf("plain bytes %v", got["plain_upload_bytes"])
	}
	// 9000 values + weight need two ciphertexts of N = 8192.
	if got["ciphertexts"].(float64) != 2 || got["client_upload_bytes"].(float64) <= got["plain_upload_bytes"].(float64) {
		t.Fatalf("ciphertexts %v, upload %v", got["ciphertexts"], got["client_upload_bytes"])
	}
}

func TestBenchHEHuman(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"bench", "he", "--clients", "3", "--committee", "2", "--threshold", "2", "--dim", "100"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "correct                  true") {
		t.Fatalf("output:\n%s", out.String())
	}
}

func TestBenchHEBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--clients", "1"},
		{"--clients", "4", "--committee", "5"},
		{"--committee", "3", "--threshold", "4"},
		{"--threshold", "1"},
		{"--dim", "0"},
		{"--dropout", "1"},
		{"--dropout", "-0.1"},
		{"--committee-offline", "9"},
		{"--bogus"},
		{"extra"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append([]string{"bench", "he"}, args...), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestBenchHEFewerThanThresholdOnline(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"bench", "he", "--clients", "4", "--committee", "3", "--threshold", "3",
		"--committee-offline", "1", "--dim", "10", "--json"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "fewer committee members than the threshold") {
		t.Fatalf("stderr: %s", errb.String())
	}
	if out.Len() != 0 {
		t.Fatalf("stdout not empty: %s", out.String())
	}
}
