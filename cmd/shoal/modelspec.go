package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"

	"shoal/data"
	"shoal/fl"
	"shoal/nn"
	"shoal/trainer"
	"shoal/transport/grpctransport"
)

// classNames is the name of every class of d, label i being the i-th: the CSV loader's label
// values, else the label numbers.
func classNames(d *data.Dataset) []string {
	if d.ClassNames != nil {
		return slices.Clone(d.ClassNames)
	}
	names := make([]string, d.Classes)
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	return names
}

// modelSpec describes model m trained on classes, as the server announces it.
func modelSpec(m *nn.Model, classes []string) grpctransport.ModelSpec {
	in := m.InputShape()
	return grpctransport.ModelSpec{Arch: m.Arch(), Input: [3]int{in.C, in.H, in.W}, LayerSizes: m.LayerSizes(),
		Classes: slices.Clone(classes)}
}

// localModel is one client replica's model and data. Until the server's Welcome it holds a
// model built for the local classes (none when the local data holds a single class); adopt
// rebuilds it for the run's model and numbers the local labels by the run's class list, so
// that every client's label i means the same class whatever its own file holds.
type localModel struct {
	arch  string
	seed  uint64
	shape nn.Shape
	names []string // local class names, label i being names[i]
	x, tx []float32
	y, ty []int32 // local labels

	mu      sync.Mutex
	model   *nn.Model
	yr, tyr []int32 // labels in the run's numbering
}

func newLocalModel(arch string, seed uint64, train *data.Dataset, x []float32, y []int32, tx []float32, ty []int32) (*localModel, error) {
	if !slices.Contains(nn.Names(), arch) {
		return nil, usageErrorf("--model: unknown model %q (valid: %s)", arch, strings.Join(nn.Names(), ", "))
	}
	l := &localModel{arch: arch, seed: seed, shape: nn.Shape{C: train.C, H: train.H, W: train.W},
		names: classNames(train), x: x, y: y, tx: tx, ty: ty, yr: y, tyr: ty}
	if len(l.names) >= 2 {
		m, err := nn.New(arch, l.shape, len(l.names), rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			return nil, usageErrorf("--model: %v", err)
		}
		l.model = m
	}
	return l, nil
}

// spec is what the client's Hello says: its architecture, input shape and local classes.
func (l *localModel) spec() *grpctransport.ModelSpec {
	return &grpctransport.ModelSpec{Arch: l.arch, Input: [3]int{l.shape.C, l.shape.H, l.shape.W}, Classes: l.present()}
}

// present lists the local classes that occur in the data.
func (l *localModel) present() []string {
	seen := make([]bool, len(l.names))
	for _, ys := range [][]int32{l.y, l.ty} {
		for _, v := range ys {
			seen[v] = true
		}
	}
	var out []string
	for i, ok := range seen {
		if ok {
			out = append(out, l.names[i])
		}
	}
	return out
}

// adopt takes the run's model: the same architecture and input shape, this build's layer
// sizes for the run's classes equal to the server's, every local class among the run's.
func (l *localModel) adopt(run grpctransport.ModelSpec) error {
	if err := run.CheckClient(*l.spec()); err != nil {
		return err
	}
	m, err := nn.New(run.Arch, nn.Shape{C: run.Input[0], H: run.Input[1], W: run.Input[2]}, len(run.Classes), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		return fmt.Errorf("build the run's model: %w", err)
	}
	if got := m.LayerSizes(); !slices.Equal(got, run.LayerSizes) {
		return fmt.Errorf("this client's %s has layer sizes %v (%d parameters), the server's %v (%d parameters): different Shoal versions?",
			run.Arch, got, m.NumParams(), run.LayerSizes, run.NumParams())
	}
	index := make([]int32, len(l.names))
	for i, name := range l.names {
		index[i] = int32(slices.Index(run.Classes, name)) // -1 only for a class absent from the data
	}
	renumber := func(ys []int32) []int32 {
		out := make([]int32, len(ys))
		for i, v := range ys {
			out[i] = index[v]
		}
		return out
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.model, l.yr, l.tyr = m, renumber(l.y), renumber(l.ty)
	return nil
}

// local is the trainer for a task (grpctransport.ClientConfig.Local).
func (l *localModel) local(round int, id fl.ClientID) (fl.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.model == nil {
		return nil, errors.New("the local data holds a single class and the server announced no class list")
	}
	return &trainer.Client{Model: l.model, X: l.x, Y: l.yr, TestX: l.tx, TestY: l.tyr,
		Rand: trainer.ShuffleRand(l.seed, round, id)}, nil
}

// clientLocals is the client's trainer factory per replica and, for Shoal's own models, the
// localModel each adopts the run's model with (nil with --trainer: the external trainer owns
// its model, and the client checks nothing).
func clientLocals(o clientOptions) ([]func(int, fl.ClientID) (fl.Client, error), []*localModel, string, error) {
	if o.trainer.Trainer != "" {
		f, desc, err := trainerLocals(o)
		return f, nil, desc, err
	}
	models, desc, err := loadLocalModels(o)
	if err != nil {
		return nil, nil, "", err
	}
	factories := make([]func(int, fl.ClientID) (fl.Client, error), len(models))
	for i, m := range models {
		factories[i] = m.local
	}
	return factories, models, desc, nil
}
