package process

import (
	"context"
	"fmt"
	"os"
	"testing"

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
