package grpctransport

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	shoalv1 "shoal/proto/shoal/v1"
)

// ModelSpec describes the model a run trains: the server announces its own in the Welcome, a
// client describes its own in the Hello, and each side refuses the other at connect time when
// they would not train the same model (instead of every round failing on the update's size).
type ModelSpec struct {
	Arch  string // architecture name, as nn.New takes it
	Input [3]int // one example's shape: channels, height, width
	// LayerSizes is the parameter count of each parameterised layer in the order of the flat
	// parameter vector; a client's Hello leaves it empty (its sizes depend on the run's classes).
	LayerSizes []int
	// Classes names the classes, label i being Classes[i]. The server's list is the run's; a
	// client's lists the classes its local data holds, which must all be among the run's.
	Classes []string
}

// ErrIncompatible marks a client whose model or data does not fit the run's model.
var ErrIncompatible = errors.New("incompatible model")

// NumParams is the total of LayerSizes.
func (m ModelSpec) NumParams() int {
	n := 0
	for _, s := range m.LayerSizes {
		n += s
	}
	return n
}

// String is a one-line description, e.g. "2nn on 1×28×28, 10 classes, 199210 parameters".
func (m ModelSpec) String() string {
	s := fmt.Sprintf("%s on %d×%d×%d, %d classes", m.Arch, m.Input[0], m.Input[1], m.Input[2], len(m.Classes))
	if len(m.LayerSizes) > 0 {
		s += fmt.Sprintf(", %d parameters", m.NumParams())
	}
	return s
}

// CheckClient reports why a client whose model and data local describes cannot take part in
// a run of m (nil when it can): the architecture and the input shape must be the same, every
// class of the client's data must be one of the run's, and layer sizes, when the client gives
// them, must be the run's. The error wraps ErrIncompatible and names both sides.
func (m ModelSpec) CheckClient(local ModelSpec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrIncompatible, fmt.Sprintf(format, args...))
	}
	switch {
	case local.Arch != m.Arch:
		return bad("the client trains model %q, the run trains %q (give the client --model %s)", local.Arch, m.Arch, m.Arch)
	case local.Input != m.Input:
		return bad("the client's examples have shape %d×%d×%d, the run's model takes %d×%d×%d (channels×height×width): a different dataset or feature columns?",
			local.Input[0], local.Input[1], local.Input[2], m.Input[0], m.Input[1], m.Input[2])
	case len(local.LayerSizes) > 0 && !slices.Equal(local.LayerSizes, m.LayerSizes):
		return bad("the client's %s has layer sizes %v (%d parameters), the run's %v (%d parameters)",
			local.Arch, local.LayerSizes, local.NumParams(), m.LayerSizes, m.NumParams())
	}
	var missing []string
	for _, c := range local.Classes {
		if !slices.Contains(m.Classes, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return bad("the client's data has classes %q that the run does not know (the run's classes: %s)",
			missing, strings.Join(m.Classes, ", "))
	}
	return nil
}

func (m *ModelSpec) proto() *shoalv1.ModelSpec {
	if m == nil {
		return nil
	}
	p := &shoalv1.ModelSpec{Arch: m.Arch, Classes: slices.Clone(m.Classes)}
	for _, v := range m.Input {
		p.InputShape = append(p.InputShape, uint32(v))
	}
	for _, v := range m.LayerSizes {
		p.LayerSizes = append(p.LayerSizes, uint64(v))
	}
	return p
}

// modelSpecFrom decodes a ModelSpec; nil for an absent one.
func modelSpecFrom(p *shoalv1.ModelSpec) (*ModelSpec, error) {
	if p == nil {
		return nil, nil
	}
	if len(p.GetInputShape()) != 3 {
		return nil, fmt.Errorf("model description: input shape has %d dimensions, want 3", len(p.GetInputShape()))
	}
	m := &ModelSpec{Arch: p.GetArch(), Classes: slices.Clone(p.GetClasses())}
	for i, v := range p.GetInputShape() {
		if v == 0 || v > 1<<24 {
			return nil, fmt.Errorf("model description: input dimension %d is %d", i, v)
		}
		m.Input[i] = int(v)
	}
	for _, v := range p.GetLayerSizes() {
		if v == 0 || v > 1<<31 {
			return nil, fmt.Errorf("model description: layer size %d", v)
		}
		m.LayerSizes = append(m.LayerSizes, int(v))
	}
	return m, nil
}
