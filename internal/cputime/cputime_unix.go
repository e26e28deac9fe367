//go:build unix

// Package cputime reads the process's CPU time. Shoal's benchmarks and run statistics report it
// next to wall-clock time because on a shared machine wall time mostly measures the wait for a
// core, while CPU time measures the work done.
package cputime

import (
	"syscall"
	"time"
)

// Process returns the user+system CPU time this process has used (all threads), or 0 if the
// platform cannot tell.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
