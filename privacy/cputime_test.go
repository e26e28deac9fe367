package privacy

import (
	"testing"
	"time"

	"shoal/internal/cputime"
)

// reportCPU adds a cpu-ms/op metric: process CPU time per iteration, which, unlike wall time,
// does not grow when other jobs share the machine.
func reportCPU(b *testing.B) func() {
	start := cputime.Process()
	return func() {
		b.ReportMetric(float64(cputime.Process()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	}
}
