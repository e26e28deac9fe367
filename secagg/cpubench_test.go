package secagg

import (
	"runtime"
	"testing"
)

// cpuTimer reports, next to the wall-clock ns/op, the CPU time of the benchmark's thread per
// operation and the matching throughput: on a machine shared with other jobs the wall clock
// mostly measures the contention.
type cpuTimer struct {
	b     *testing.B
	start int64
	bytes int64
}

func startCPU(b *testing.B, bytesPerOp int64) *cpuTimer {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	b.SetBytes(bytesPerOp)
	b.ResetTimer()
	return &cpuTimer{b: b, start: int64(threadCPU()), bytes: bytesPerOp}
}

func (c *cpuTimer) stop() {
	ns := float64(int64(threadCPU())-c.start) / float64(c.b.N)
	c.b.ReportMetric(ns, "cpu-ns/op")
	if c.bytes > 0 && ns > 0 {
		c.b.ReportMetric(float64(c.bytes)/ns*1e9/1e6, "cpu-MB/s")
	}
}

// BenchmarkX25519 is one key agreement (circl's X25519 plus HKDF-SHA256), the other big cost.
func BenchmarkX25519Agree(b *testing.B) {
	rs := testStream(b, 3)
	a, p := newKeyPair(rs), newKeyPair(rs)
	t := startCPU(b, 0)
	for b.Loop() {
		if _, err := agree(&a.secret, &p.public, purposeMask, session{round: 1}, 0, 1); err != nil {
			b.Fatal(err)
		}
	}
	t.stop()
}

// BenchmarkShamirShare500 deals one client's two secrets to 499 holders with threshold 449.
func BenchmarkShamirShare500(b *testing.B) {
	rs := testStream(b, 4)
	secrets := make([]uint64, 2*chunksPerSecret)
	out := make([]uint64, len(secrets))
	t := startCPU(b, 0)
	for b.Loop() {
		d, _ := newShamirDealer(secrets, 449, rs)
		for x := uint64(1); x < 500; x++ {
			d.shareAt(x, out)
		}
	}
	t.stop()
}
