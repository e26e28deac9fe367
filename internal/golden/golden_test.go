package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiffNamesTheFirstDifference(t *testing.T) {
	d := Diff([]byte{1, 2, 3, 4}, []byte{1, 2, 9})
	if !strings.Contains(d, "offset 2") || !strings.Contains(d, "got 03 04, want 09") || !strings.Contains(d, "got 4 bytes, want 3") {
		t.Fatalf("diff %q", d)
	}
}

// Check rewrites with Update and then accepts the same bytes; a file that differs fails.
func TestCheckUpdatesThenCompares(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	Files{Update: true}.Check(t, "msg", []byte("abc"))
	if got, _ := os.ReadFile(filepath.Join("testdata", "golden", "msg.golden")); string(got) != "abc" {
		t.Fatalf("golden file holds %q", got)
	}
	Files{}.Check(t, "msg", []byte("abc"))
	ft := &fakeT{TB: t}
	Files{UpdateCmd: "go test -update"}.Check(ft, "msg", []byte("abd"))
	if !ft.failed || !strings.Contains(ft.msg, "go test -update") {
		t.Fatalf("a mismatch was not reported: %q", ft.msg)
	}
}

type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, a ...any) {
	f.failed = true
	f.msg = strings.TrimSpace(format)
	for _, v := range a {
		if s, ok := v.(string); ok {
			f.msg += " " + s
		}
	}
}
