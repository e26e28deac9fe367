package store

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"shoal/internal/cputime"
	"testing"
	"time"
)

// reportCPU adds a cpu-ms/op metric measured from start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cputime.Process()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// benchParams is the size of the reference model (the MNIST MLP 784-256-...-10 of 199,210
// parameters): 797 KB per checkpoint.
const benchParams = 199_210

func benchModel() []float32 {
	m := make([]float32, benchParams)
	for i := range m {
		m[i] = float32(i%1000) * 1e-3
	}
	return m
}

// benchDir keeps benchmark files on the same file system a run store would use (TMPDIR), so
// fsync costs are real.
func benchDir(b *testing.B) string {
	return b.TempDir()
}

// BenchmarkCommitRound commits one round (model, metrics, accountant, optionally FedAdam-sized
// optimiser state of two more model-sized vectors) per iteration, durably.
func BenchmarkCommitRound(b *testing.B) {
	for _, bc := range []struct {
		name       string
		stateBytes int
	}{
		{"model", 0},
		{"model+adam_state", 2 * 4 * benchParams},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Open(filepath.Join(benchDir(b), "run.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			run, err := s.CreateRun([]byte(`{"bench":true}`))
			if err != nil {
				b.Fatal(err)
			}
			model := benchModel()
			metrics := []byte(`{"round":1,"loss":0.31,"accuracy":0.91,"participants":100,"dropouts":3}`)
			acct := []byte(`{"mechanism":"gaussian","noise_multiplier":1.1,"sample_rate":0.01,"steps":1}`)
			var state []byte
			if bc.stateBytes > 0 {
				state = make([]byte, bc.stateBytes)
			}
			b.SetBytes(int64(4*len(model) + len(state)))
			b.ResetTimer()
			start := cputime.Process()
			for r := 1; r <= b.N; r++ {
				model[0] = float32(r)
				if err := s.CommitRound(run, r, model, metrics, acct, state); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}

// BenchmarkLastRound measures reading the latest checkpoint back (what --resume costs).
func BenchmarkLastRound(b *testing.B) {
	s, err := Open(filepath.Join(benchDir(b), "run.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	run, _ := s.CreateRun([]byte(`{}`))
	model := benchModel()
	for r := 1; r <= 20; r++ {
		if err := s.CommitRound(run, r, model, []byte(`{}`), []byte(`{}`), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(4 * benchParams)
	b.ResetTimer()
	start := cputime.Process()
	for b.Loop() {
		if r, m, _, _, err := s.LastRound(run); err != nil || r != 20 || len(m) != benchParams {
			b.Fatal(r, err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkDurableFileWrite is the floor for CommitRound: write the same model bytes to a file
// and fsync it, once per iteration, with no database at all.
func BenchmarkDurableFileWrite(b *testing.B) {
	blob, _ := EncodeModel(benchModel())
	f, err := os.Create(filepath.Join(benchDir(b), "raw.bin"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(blob)))
	b.ResetTimer()
	start := cputime.Process()
	for b.Loop() {
		if _, err := f.Write(blob); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkEncodeModel is the CPU part of CommitRound outside SQLite: layout and SHA-256.
func BenchmarkEncodeModel(b *testing.B) {
	model := benchModel()
	b.SetBytes(4 * benchParams)
	for b.Loop() {
		blob, sum := EncodeModel(model)
		if len(blob) == 0 || sum == [sha256.Size]byte{} {
			b.Fatal("empty")
		}
	}
}
