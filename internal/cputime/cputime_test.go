package cputime

import (
	"runtime"
	"testing"
)

func TestProcessGrowsWithWork(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no CPU time on this platform")
	}
	start := Process()
	x := 0.0
	for i := range 50_000_000 {
		x += float64(i & 7)
	}
	if Process() <= start || x == 0 {
		t.Fatalf("CPU time did not grow: %v → %v", start, Process())
	}
}
