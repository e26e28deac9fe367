package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamplesAreComplete checks every example directory: a README that shows run.sh, an
// executable run.sh that bash parses and that prints the --json summary, a trainer.py that
// Python parses, and a row in the repository README's examples table.
func TestExamplesAreComplete(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) < 4 {
		t.Fatalf("found examples %v, want at least numpy-logreg, pytorch-mnist, pytorch-lm, sklearn-tabular", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(filepath.Join(name, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(doc), "run.sh") {
				t.Errorf("%s/README.md does not show run.sh", name)
			}
			script := filepath.Join(name, "run.sh")
			info, err := os.Stat(script)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode()&0o111 == 0 {
				t.Errorf("%s is not executable", script)
			}
			if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
				t.Errorf("bash -n %s: %v\n%s", script, err, out)
			}
			body, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(body), "--json") || !strings.Contains(string(body), "--trainer") {
				t.Errorf("%s does not run shoal with --trainer and --json", script)
			}
			py := filepath.Join(name, "trainer.py")
			check := "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])"
			if out, err := exec.Command("/usr/bin/python3", "-c", check, py).CombinedOutput(); err != nil {
				t.Errorf("%s does not parse: %v\n%s", py, err, out)
			}
			if !strings.Contains(string(readme), "examples/"+name+"/") {
				t.Errorf("README.md's examples table has no row for examples/%s/", name)
			}
		})
	}
}
