package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// Help goes to stdout (shoal simulate -h | less), `shoal help X` is X's help, flags print with
// --, and every command's help ends with two or three examples.
func TestHelpOnStdout(t *testing.T) {
	for words := range commands {
		args := append(strings.Fields(words), "-h")
		code, stdout, stderr := shoal(t, args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Usage: shoal "+words+" [flags]") {
			t.Fatalf("%s -h: exit %d, stderr %q, stdout %.80q", words, code, stderr, stdout)
		}
		if code2, stdout2, _ := shoal(t, append([]string{"help"}, strings.Fields(words)...)...); code2 != 0 || stdout2 != stdout {
			t.Errorf("shoal help %s: exit %d, differs from %s -h", words, code2, words)
		}
		ex := strings.Split(stdout, "\nExamples:\n")
		if len(ex) != 2 {
			t.Fatalf("%s: help has no examples:\n%s", words, stdout)
		}
		if n := strings.Count(ex[1], "\n  shoal "); n < 1 || n+1 < 2 || n+1 > 3 || !strings.HasPrefix(ex[1], "  shoal "+strings.Fields(words)[0]) {
			t.Errorf("%s: want 2 or 3 examples, got:\n%s", words, ex[1])
		}
		for _, line := range strings.Split(ex[0], "\n") {
			if strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --") {
				t.Errorf("%s: flag printed with one dash: %q", words, line)
			}
		}
	}
	if code, stdout, _ := shoal(t, "help"); code != 0 || !strings.Contains(stdout, "simulate") {
		t.Fatalf("shoal help: exit %d, %q", code, stdout)
	}
}

// The server's help lists no flag it refuses, and its wait has its own flag.
func TestServerHelpHidesRefusedFlags(t *testing.T) {
	_, stdout, _ := shoal(t, "server", "-h")
	for _, name := range append(simulationOnly, "min-sampled") {
		if strings.Contains(stdout, "  --"+name+" ") {
			t.Errorf("server -h lists --%s", name)
		}
	}
	for _, name := range []string{"wait-clients", "min-clients", "workers", "cpuprofile", "linger"} {
		if !strings.Contains(stdout, "  --"+name+" ") {
			t.Errorf("server -h lacks --%s", name)
		}
	}
	if code, _, stderr := shoal(t, "server", "--insecure", "--dropout", "0.1"); code != 2 || !strings.Contains(stderr, "simulates") {
		t.Errorf("--dropout on the server: exit %d, %q", code, stderr)
	}
}

// A mistyped flag is one line with the closest flag's name, not the whole usage.
func TestMistypedFlagHint(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"simulate", "--rouns", "5"}, "did you mean --rounds?"},
		{[]string{"simulate", "--sampl", "poisson"}, "did you mean --sampling?"},
		{[]string{"server", "--min-client", "3"}, "did you mean --min-clients?"},
		{[]string{"simulate", "--lr", "fast"}, "invalid value \"fast\" for flag --lr"},
		{[]string{"privacy", "noise", "--stepz", "3"}, "did you mean --steps?"},
	} {
		code, stdout, stderr := shoal(t, tc.args...)
		if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want one line with %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, _, stderr := shoal(t, "server", "--dropot", "1"); strings.Contains(stderr, "--dropout") {
		t.Errorf("the hint suggests a flag the server refuses: %q", stderr)
	}
}

// Every validation error names the flag the user typed.
func TestValidationErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fraction", "0"}, "--fraction"},
		{[]string{"--sampling", "poisson", "--fraction", "1.5"}, "--fraction"},
		{[]string{"--lr", "-1"}, "--lr"},
		{[]string{"--local-epochs", "0"}, "--local-epochs"},
		{[]string{"--batch-size", "0"}, "--batch-size"},
		{[]string{"--min-results", "0"}, "--min-results"},
		{[]string{"--min-clients", "0"}, "--min-clients"},
		{[]string{"--momentum", "1"}, "--momentum"},
		{[]string{"--weight-decay", "-1"}, "--weight-decay"},
		{[]string{"--target-accuracy", "2"}, "--target-accuracy"},
		{[]string{"--dropout", "1.5"}, "--dropout"},
		{[]string{"--straggler-fraction", "2"}, "--straggler-fraction"},
		{[]string{"--strategy", "fedavgm", "--server-momentum", "1"}, "--server-momentum"},
		{[]string{"--strategy", "fedadam", "--server-beta2", "1"}, "--server-beta2"},
	} {
		code, _, stderr := shoal(t, append([]string{"simulate", "--dataset", "synthetic", "--out", t.TempDir()}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want a usage error naming %s", tc.args, code, stderr, tc.want)
		}
	}
}

// An --out that already holds files is refused before anything runs; an empty one is used.
func TestExistingRunDirectoryRefused(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "model.bin"), []byte("an earlier run"), 0o644)
	code, _, stderr := shoal(t, "simulate", "--dataset", "synthetic", "--model", "logreg", "--rounds", "1", "--out", dir)
	if code != 2 || !strings.Contains(stderr, "--out") || !strings.Contains(stderr, "never overwrites") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "model.bin")); string(b) != "an earlier run" {
		t.Fatal("the earlier run was overwritten")
	}
	// A default directory never collides, even for runs started in the same second.
	t.Chdir(t.TempDir())
	var outs []string
	for range 2 {
		out := ""
		d, err := claimRunDir(&out, "simulate", false)
		if err != nil || !d.created {
			t.Fatal(err)
		}
		outs = append(outs, out)
		os.WriteFile(filepath.Join(out, "x"), nil, 0o644)
	}
	if outs[0] == outs[1] {
		t.Fatalf("two default run directories are the same: %s", outs[0])
	}
	// A run that never started leaves no directory behind.
	missing := filepath.Join(t.TempDir(), "new")
	d, err := claimRunDir(&missing, "simulate", false)
	if err != nil {
		t.Fatal(err)
	}
	d.release()
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("an unused run directory was left: %v", err)
	}
}

// config.toml holds the run's configuration in the keys --config reads: reading it back gives
// the same options, and running it again trains the same model.
func TestConfigTOMLRoundTrip(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "first")
	args := []string{"simulate", "--dataset", "synthetic", "--model", "logreg", "--clients", "12", "--fraction", "0.5",
		"--rounds", "3", "--lr", "0.05", "--target-accuracy", "0", "--strategy", "fedavgm", "--server-momentum", "0",
		"--straggler-fraction", "0.25", "--straggler-delay", "1ms", "--round-timeout", "1m30s", "--out", first}
	if code, _, stderr := shoal(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfgPath := filepath.Join(first, "config.toml")
	var cfg map[string]any
	if _, err := toml.DecodeFile(cfgPath, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["round-timeout"] != "1m30s" || cfg["straggler-delay"] != "1ms" || cfg["server-momentum"] != 0.0 ||
		cfg["clients"] != int64(12) || cfg["strategy"] != "fedavgm" || cfg["seed"] == nil {
		t.Fatalf("config.toml: %v", cfg)
	}
	for _, k := range configNotReplayed {
		if _, ok := cfg[k]; ok {
			t.Errorf("config.toml holds %q", k)
		}
	}
	var a, b simOptions
	if err := parseWithConfig(simulateFlags(&a, nil), []string{"--config", cfgPath}); err != nil {
		t.Fatal(err)
	}
	if err := parseWithConfig(simulateFlags(&b, nil), append(args[1:len(args)-2], "--seed", a.flags.Lookup("seed").Value.String())); err != nil {
		t.Fatal(err)
	}
	a.flags, b.flags = nil, nil
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("options from config.toml %+v\ndiffer from the command line's %+v", a, b)
	}
	second := filepath.Join(dir, "second")
	if code, _, stderr := shoal(t, "simulate", "--config", cfgPath, "--out", second); code != 0 {
		t.Fatalf("rerun: exit %d: %s", code, stderr)
	}
	m1, _ := os.ReadFile(filepath.Join(first, "model.bin"))
	m2, _ := os.ReadFile(filepath.Join(second, "model.bin"))
	if len(m1) == 0 || string(m1) != string(m2) {
		t.Fatal("the run from config.toml trained another model")
	}
}

// Every flag's placeholder in the help is its value's type, as flag.UnquoteUsage names it:
// wrapped values (--dataset, --target-accuracy) and the strategies' hyper-parameters used to
// show "name", "accuracy" or "value".
func TestHelpShowsValueTypes(t *testing.T) {
	kinds := map[string]bool{"string": true, "float": true, "int": true, "uint": true, "duration": true}
	for _, cmd := range []string{"simulate", "server", "client"} {
		_, stdout, _ := shoal(t, cmd, "-h")
		for _, line := range strings.Split(stdout, "\n") {
			f := strings.Fields(line)
			if !strings.HasPrefix(line, "  --") || len(f) < 2 {
				continue
			}
			if !kinds[f[1]] {
				t.Errorf("%s -h: %q shows %q, not a value type", cmd, line, f[1])
			}
		}
	}
	_, stdout, _ := shoal(t, "simulate", "-h")
	for _, want := range []string{"  --dataset string\n", "  --target-accuracy float\n", "  --krum-f int\n", "  --server-lr float\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("simulate -h lacks %q", want)
		}
	}
}
