//go:build unix

package nn

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system) this process has used. The benchmarks report work per
// CPU-second next to work per wall-second because this machine is shared: the wall figure
// includes the time other processes held the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
