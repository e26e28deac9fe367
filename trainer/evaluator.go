package trainer

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"shoal/data"
	"shoal/nn"
)

// Evaluator scores a global model on a held-out test set (central evaluation), split across
// workers, each with its own copy of the model. The simulator and the server both use it; it
// needs only the model's shape and the test set.
type Evaluator struct {
	test   *data.Dataset
	models chan *nn.Model
	parts  int
}

// NewEvaluator prepares to evaluate copies of model on test with up to workers goroutines
// (0: GOMAXPROCS). Test sets smaller than 1,000 examples per worker use fewer.
func NewEvaluator(model *nn.Model, test *data.Dataset, workers int) (*Evaluator, error) {
	if model == nil || test == nil || test.Len() == 0 {
		return nil, errors.New("central evaluation needs a model and a non-empty test set")
	}
	if in := model.InputShape().Size(); test.Dim != in {
		return nil, fmt.Errorf("test examples have %d features, the model takes %d", test.Dim, in)
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	parts := min(workers, max(1, test.Len()/1000))
	e := &Evaluator{test: test, models: make(chan *nn.Model, parts), parts: parts}
	for range parts {
		e.models <- model.Clone()
	}
	return e, nil
}

// Evaluate returns the mean loss and accuracy of params on the test set. It is an fl.Evaluator.
func (e *Evaluator) Evaluate(params []float32) (loss, accuracy float64, err error) {
	n := e.test.Len()
	type score struct {
		loss, acc float64
		n         int
		err       error
	}
	scores := make([]score, e.parts)
	var wg sync.WaitGroup
	for p := range e.parts {
		lo, hi := p*n/e.parts, (p+1)*n/e.parts
		wg.Go(func() {
			m := <-e.models
			defer func() { e.models <- m }()
			if len(params) != m.NumParams() {
				scores[p].err = fmt.Errorf("model has %d parameters, got %d", m.NumParams(), len(params))
				return
			}
			copy(m.Params(), params)
			l, a, err := m.Evaluate(e.test.X[lo*e.test.Dim:hi*e.test.Dim], e.test.Y[lo:hi])
			scores[p] = score{l, a, hi - lo, err}
		})
	}
	wg.Wait()
	for _, sc := range scores {
		if sc.err != nil {
			return 0, 0, sc.err
		}
		loss += sc.loss * float64(sc.n)
		accuracy += sc.acc * float64(sc.n)
	}
	return loss / float64(n), accuracy / float64(n), nil
}
