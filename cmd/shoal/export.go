package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"shoal/data"
	"shoal/nn"
	"shoal/report"
)

func init() {
	register(command{words: "export", summary: "convert a saved model.bin to safetensors, ONNX or NumPy .npz", run: runExport})
	examples["export"] = []string{
		"shoal export --format onnx --model runs/mnist/model.bin --out mnist.onnx",
		"shoal export --format npz --model runs/mnist/model.bin --out mnist.npz",
	}
}

// runModels holds the description of the model each run trains, keyed by the first element of
// the parameter vector the engine trains in place (set by buildPlan, taken when the run
// directory's model files are written; an external --trainer replaces the vector and its
// description by the trainer's, from its handshake).
var runModels sync.Map // *float32 → report.ModelInfo

// describeModel is the self-describing part of a saved model: architecture, input, classes,
// layout and the feature scaling of the data it was evaluated on.
func describeModel(m *nn.Model, classes []string, scaling *data.Scaling, dataset string) report.ModelInfo {
	in := m.InputShape()
	info := report.ModelInfo{Arch: m.Arch(), Input: [3]int{in.C, in.H, in.W}, Classes: slices.Clone(classes), Dataset: dataset}
	for _, t := range m.Tensors() {
		info.Tensors = append(info.Tensors, report.Tensor{Name: t.Name, Shape: t.Shape, Offset: t.Offset})
	}
	if scaling != nil {
		info.Scaling = &report.FeatureScaling{Mean: scaling.Mean, Scale: scaling.Scale}
	}
	return info
}

// writeModelFiles writes the run's model.bin (with its description, the run's protection and
// ε) and model.safetensors.
func writeModelFiles(o simOptions, params []float32, s simSummary) error {
	info := report.ModelInfo{Arch: o.Model, Dataset: o.Dataset}
	if len(params) > 0 {
		if v, ok := runModels.LoadAndDelete(&params[0]); ok {
			info = v.(report.ModelInfo)
		}
	}
	info.Protection, info.Epsilon, info.Delta = s.Protection, s.Epsilon, s.Delta
	info.Rounds, info.Accuracy = s.RoundsRun, s.FinalAccuracy
	m := &report.Model{Info: info, Params: params}
	if err := report.WriteModelFile(o.Out, "model.bin", m); err != nil {
		return err
	}
	if len(info.Tensors) == 0 {
		return nil // no layout known: nothing to name the weights by
	}
	var buf bytes.Buffer
	if err := report.WriteSafetensors(&buf, m); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "model.safetensors"), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write model.safetensors: %w", err)
	}
	return nil
}

type exportOptions struct {
	Format, Model, Out string
}

func runExport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var o exportOptions
	fs := flag.NewFlagSet("shoal export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Format, "format", "", "output format: "+strings.Join(exportFormats, ", "))
	fs.StringVar(&o.Model, "model", "", "model file written by a run (runs/x/model.bin)")
	fs.StringVar(&o.Out, "out", "", "file to write")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	switch {
	case !slices.Contains(exportFormats, o.Format):
		return usageErrorf("--format %q: valid: %s", o.Format, strings.Join(exportFormats, ", "))
	case o.Model == "" || o.Out == "":
		return usageErrorf("--model FILE and --out FILE are required")
	}
	m, err := report.ReadModelFile(o.Model)
	if err != nil {
		return err
	}
	if len(m.Info.Tensors) == 0 {
		return fmt.Errorf("%s has no parameter layout (a model file of format version 1): re-run to export it", o.Model)
	}
	var buf bytes.Buffer
	switch o.Format {
	case "safetensors":
		err = report.WriteSafetensors(&buf, m)
	case "npz":
		err = report.WriteNPZ(&buf, m)
	case "onnx":
		err = report.WriteONNX(&buf, m)
	}
	if err != nil {
		return fmt.Errorf("export %s: %w", o.Format, err)
	}
	if err := os.WriteFile(o.Out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stderr, "shoal export: %s (%s, %d parameters) → %s (%s, %d bytes)\n", o.Model, m.Info.Arch, len(m.Params), o.Out, o.Format, buf.Len())
	return nil
}

var exportFormats = []string{"safetensors", "onnx", "npz"}
