package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"shoal/data"
	"shoal/nn"
	"shoal/report"
)

func init() {
	register(command{words: "predict", summary: "predict with a saved model: accuracy on labelled data, else one class per example", run: runPredict})
	examples["predict"] = []string{
		"shoal predict --model runs/mnist/model.bin --data mnist-test",
		"shoal predict --model runs/cancer/model.bin --data new-patients.csv   # one class per row",
	}
}

type predictOptions struct {
	Model, Data, DataDir, LabelColumn string
	All                               bool
}

func runPredict(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var o predictOptions
	fs := flag.NewFlagSet("shoal predict", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Model, "model", "", "model file written by a run (runs/x/model.bin)")
	fs.StringVar(&o.Data, "data", "", "a CSV file (features in the training file's columns; the label column is optional) or mnist-test")
	fs.StringVar(&o.DataDir, "data-dir", "", "directory of the MNIST IDX files for mnist-test (default: the GoMNIST module's copy)")
	fs.StringVar(&o.LabelColumn, "label-column", "label", "label column of the CSV file, when it has one")
	fs.BoolVar(&o.All, "predictions", false, "print each example's predicted class even when the data is labelled")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if o.Model == "" || o.Data == "" {
		return usageErrorf("--model FILE and --data FILE|mnist-test are required")
	}
	saved, model, err := loadSavedModel(o.Model)
	if err != nil {
		return err
	}
	d, err := o.load()
	if err != nil {
		return err
	}
	return predict(saved, model, d, o.All, stdout)
}

// loadSavedModel reads a model file and rebuilds its network.
func loadSavedModel(path string) (*report.Model, *nn.Model, error) {
	saved, err := report.ReadModelFile(path)
	if err != nil {
		return nil, nil, err
	}
	in := saved.Info.Input
	if saved.Info.Trainer != "" {
		return nil, nil, fmt.Errorf("%s is the model of external trainer %q: predict with the trainer (its weights are in model.safetensors)", path, saved.Info.Trainer)
	}
	if len(saved.Info.Classes) == 0 {
		return nil, nil, fmt.Errorf("%s has no description (a model file of format version 1): re-run to predict with it", path)
	}
	m, err := nn.New(saved.Info.Arch, nn.Shape{C: in[0], H: in[1], W: in[2]}, len(saved.Info.Classes), rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.SetParams(saved.Params); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return saved, m, nil
}

func (o predictOptions) load() (*data.Dataset, error) {
	if o.Data == "mnist-test" {
		return data.LoadMNISTTest(o.DataDir)
	}
	labelled, err := csvHasColumn(o.Data, o.LabelColumn)
	if err != nil {
		return nil, err
	}
	if labelled {
		return data.LoadCSVFile(o.Data, o.LabelColumn)
	}
	return loadFeatures(o.Data)
}

// predict scales d as the model's training data was, and prints the accuracy (labelled data)
// or each example's predicted class.
func predict(saved *report.Model, m *nn.Model, d *data.Dataset, all bool, stdout io.Writer) error {
	if d.Dim != m.InputShape().Size() {
		return fmt.Errorf("the data has %d features, the model takes %d", d.Dim, m.InputShape().Size())
	}
	if s := saved.Info.Scaling; s != nil {
		if err := (&data.Scaling{Mean: s.Mean, Scale: s.Scale}).Apply(d); err != nil {
			return err
		}
	}
	logits, err := m.Logits(d.X)
	if err != nil {
		return err
	}
	classes := saved.Info.Classes
	pred := argmaxes(logits, len(classes))
	if d.Y == nil || all {
		for _, p := range pred {
			fmt.Fprintln(stdout, classes[p])
		}
		if d.Y == nil {
			return nil
		}
	}
	names := classNames(d)
	correct := 0
	for i, y := range d.Y {
		if names[y] == classes[pred[i]] {
			correct++
		}
	}
	fmt.Fprintf(stdout, "accuracy %.4f (%d of %d)\n", float64(correct)/float64(len(d.Y)), correct, len(d.Y))
	return nil
}

// argmaxes are the predicted classes of logits (n×classes). NaN never wins (a model file
// with NaN weights or an Inf feature must not turn into an index of -1).
func argmaxes(logits []float32, classes int) []int {
	out := make([]int, len(logits)/classes)
	for i := range out {
		row := logits[i*classes : (i+1)*classes]
		best := 0
		for j, v := range row {
			if v > row[best] || row[best] != row[best] {
				best = j
			}
		}
		out[i] = best
	}
	return out
}

func csvHasColumn(path, column string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("predict: %w", err)
	}
	defer f.Close()
	header, err := csv.NewReader(f).Read()
	if err != nil {
		return false, fmt.Errorf("predict: %s: header: %w", path, err)
	}
	for _, h := range header {
		if strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) == column {
			return true, nil
		}
	}
	return false, nil
}

// loadFeatures reads a CSV of numeric feature columns only (a header row, no labels).
func loadFeatures(path string) (*data.Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("predict: %s: %w", path, err)
	}
	if len(records) < 2 {
		return nil, fmt.Errorf("predict: %s: no data rows after the header", path)
	}
	dim := len(records[0])
	x := make([]float32, 0, dim*(len(records)-1))
	for i, rec := range records[1:] {
		for j, field := range rec {
			v, err := strconv.ParseFloat(strings.TrimSpace(field), 32)
			if err != nil {
				return nil, fmt.Errorf("predict: %s: line %d, column %d: %w", path, i+2, j+1, errors.Unwrap(err))
			}
			x = append(x, float32(v))
		}
	}
	return &data.Dataset{Name: path, X: x, Dim: dim, C: 1, H: 1, W: dim}, nil
}
