//go:build unix

package he

import (
	"syscall"
	"time"
)

// processCPU returns the process's user+system CPU time. RunRound reports it next to
// wall-clock time because on a shared machine wall time mostly measures the wait for a
// core.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
