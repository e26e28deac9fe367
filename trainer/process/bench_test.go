package process

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"shoal/data"
	"shoal/fl"
)

// benchFit measures one fit round trip (the parameters to the trainer and back) of a model of dim
// float32 values; b.SetBytes counts both directions.
func benchFit(b *testing.B, cfg Config, dim int) {
	tr, err := Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	c := &Client{Trainer: tr, Train: Data{All: true}}
	params := make([]float32, dim)
	ins := fl.FitIns{Round: 1, Params: params, Config: fitConfig}
	if _, err := c.Fit(context.Background(), ins); err != nil { // warm up
		b.Fatal(err)
	}
	b.SetBytes(int64(8 * dim))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Fit(context.Background(), ins); err != nil {
			b.Fatal(err)
		}
	}
}

func goEcho(b *testing.B, dim int) Config {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	return Config{Command: "'" + exe + "'", Env: []string{fakeEnv + "=ok", fmt.Sprintf("SHOAL_FAKE_DIM=%d", dim)}}
}

func pyEcho(b *testing.B, dim int) Config {
	py := os.Getenv("SHOAL_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	return Config{Command: py + " testdata/echo_trainer.py", Env: []string{fmt.Sprintf("SHOAL_ECHO_DIM=%d", dim)}}
}

const dim100MB = 25_000_000

func BenchmarkFit100MBGoTrainer(b *testing.B)     { benchFit(b, goEcho(b, dim100MB), dim100MB) }
func BenchmarkFit100MBPythonTrainer(b *testing.B) { benchFit(b, pyEcho(b, dim100MB), dim100MB) }
func BenchmarkFitLogRegPythonTrainer(b *testing.B) {
	benchFit(b, pyEcho(b, 7850), 7850)
}

// BenchmarkFit2NNTorchOverhead measures the bridge's share of a real fit: the PyTorch 2NN of
// examples/pytorch-mnist (199,210 parameters) trains one epoch on 600 MNIST examples (B = 10, the
// shard of one of 100 IID clients) per fit. The trainer reports the seconds spent inside its fit
// (shoal_trainer's fit_seconds); everything else in the client's path — framing, the transfer both
// ways, process switches, validation and the delta — is the overhead, reported as a percentage
// of the whole. Needs Debian's python3-torch, so it is a benchmark only (not run by go test).
func BenchmarkFit2NNTorchOverhead(b *testing.B) {
	dir, err := data.MNISTDir()
	if err != nil {
		b.Fatal(err)
	}
	py := os.Getenv("SHOAL_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	ctx := context.Background()
	tr, err := Start(ctx, Config{Command: py + " ../../examples/pytorch-mnist/trainer.py --model 2nn --data-dir '" + dir + "'"})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	params, err := tr.InitialParams(ctx, 1)
	if err != nil {
		b.Fatal(err)
	}
	if len(params) != 199_210 {
		b.Fatalf("2NN layout has %d parameters, want 199,210", len(params))
	}
	c := &Client{Trainer: tr, Train: Data{Indices: make([]int, 600)}}
	for i := range c.Train.Indices {
		c.Train.Indices[i] = i
	}
	ins := fl.FitIns{Round: 1, Params: params, Config: fitConfig}
	fit := func(seed uint64) (total, inTrainer time.Duration) {
		start := time.Now()
		out, err := tr.Fit(ctx, FitTask{Round: 1, Data: c.Train, Params: params, Config: fitConfig, Seed: seed})
		if err != nil {
			b.Fatal(err)
		}
		inTrainer = time.Duration(out.Metrics[FitSecondsMetric] * float64(time.Second))
		if inTrainer <= 0 {
			b.Fatalf("trainer reported no %s metric", FitSecondsMetric)
		}
		if _, err := c.finish(ins, out, time.Since(start)); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), inTrainer
	}
	fit(0) // warm up: the first fit loads the training set
	var total, inTrainer time.Duration
	seed := uint64(1)
	for b.Loop() {
		t, f := fit(seed)
		total, inTrainer, seed = total+t, inTrainer+f, seed+1
	}
	b.ReportMetric(100*float64(total-inTrainer)/float64(total), "overhead-%")
	b.ReportMetric(float64(total-inTrainer)/float64(b.N)/1e6, "bridge-ms/op")
	b.ReportMetric(float64(inTrainer)/float64(b.N)/1e6, "trainer-ms/op")
}
