package process

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"
)

// The test binary doubles as a tiny trainer (and fault injector): with SHOAL_FAKE_TRAINER set,
// TestMain serves the protocol on stdin/stdout instead of running tests. Its model is a vector
// whose fit moves every parameter by +0.5 (or, in mode "update", returns the update 0.5 itself).
const fakeEnv = "SHOAL_FAKE_TRAINER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		if err := fakeTrainer(mode); err != nil {
			fmt.Fprintln(os.Stderr, "fake trainer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeLayout is the fake model: 8 parameters, or SHOAL_FAKE_DIM in one tensor.
func fakeLayout() Layout {
	if d, err := strconv.Atoi(os.Getenv("SHOAL_FAKE_DIM")); err == nil {
		return Layout{{Name: "w", Shape: []int{d}, DType: "float32"}}
	}
	return Layout{{Name: "w", Shape: []int{3, 2}, DType: "float32"}, {Name: "b", Shape: []int{2}, DType: "float32"}}
}

func fakeTrainer(mode string) error {
	r := bufio.NewReaderSize(os.Stdin, 1<<16)
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	layout := fakeLayout()
	dim := layout.Size()
	var buf []float32
	fits := 0
	for {
		h, _, err := readHeader(r)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		var params []float32
		var idx []int
		if h.Params > 0 {
			if buf, err = readFloats(r, buf, h.Params); err != nil {
				return err
			}
			params = buf
		}
		if h.Indices > 0 {
			if idx, err = readIndices(r, h.Indices); err != nil {
				return err
			}
		}
		var reply frame
		switch h.Type {
		case "hello":
			v := Version
			if mode == "version" {
				v = Version + 1
			}
			if mode == "stdout-noise" {
				fmt.Fprintln(w, "hello from a print()")
			}
			if mode == "exit-at-start" {
				fmt.Fprintln(os.Stderr, "cannot import torch")
				os.Exit(2)
			}
			reply = frame{hdr: map[string]any{"type": "hello", "protocol": v, "trainer": "fake", "layout": layout}}
		case "init":
			p := make([]float32, dim)
			for i := range p {
				p[i] = float32(i)
			}
			reply = frame{hdr: map[string]any{"type": "params", "params": dim}, params: p}
		case "fit":
			fits++
			switch {
			case mode == "crash-fit" || mode == "crash-once" && fits == 1 && os.Getenv("SHOAL_FAKE_MARK") != "" && !exists(os.Getenv("SHOAL_FAKE_MARK")):
				if m := os.Getenv("SHOAL_FAKE_MARK"); m != "" {
					_ = os.WriteFile(m, nil, 0o644)
				}
				fmt.Fprintln(os.Stderr, "segfault in fit")
				os.Exit(139)
			case mode == "hang-fit":
				time.Sleep(time.Hour)
			case mode == "error-fit":
				reply = frame{hdr: map[string]any{"type": "error", "message": "CUDA out of memory"}}
			}
			if reply.hdr != nil {
				break
			}
			n := len(idx)
			if h.Indices == 0 {
				n = 100
			}
			out := make([]float32, len(params))
			kind := "params"
			for i, p := range params {
				out[i] = p + 0.5
				if mode == "update" {
					out[i] = 0.5
					kind = "update"
				}
			}
			if mode == "nan" {
				out[3] = float32(math.NaN())
			}
			if mode == "wrong-layout" {
				out = out[:len(out)-1]
			}
			if mode == "inflate" { // a huge update, claimed over far more examples than given
				for i := range out {
					out[i] = params[i] + 1e6
				}
				n = 1_000_000
			}
			reply = frame{hdr: map[string]any{"type": "fit_result", "kind": kind, "params": len(out), "examples": n,
				"loss": 0.25, "metrics": map[string]float64{"acc": 0.5}}, params: out}
		case "evaluate":
			n := len(idx)
			if h.Indices == 0 {
				n = 10
			}
			var s float64
			for _, p := range params {
				s += float64(p)
			}
			reply = frame{hdr: map[string]any{"type": "evaluate_result", "loss": s, "accuracy": 0.75, "examples": n}}
		case "shutdown":
			return nil
		default:
			reply = frame{hdr: map[string]any{"type": "error", "message": "unknown message " + h.Type}}
		}
		if err := writeFrame(w, reply); err != nil {
			return err
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
