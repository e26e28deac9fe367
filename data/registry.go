package data

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Source says where a dataset comes from; each loader reads the fields it needs.
type Source struct {
	Dir            string  // MNIST: directory of the IDX files ("" for the module copy)
	Path           string  // CSV: the file
	LabelColumn    string  // CSV: the label column
	TestFraction   float64 // CSV: fraction held out for testing
	SyntheticAlpha float64 // Synthetic(α, β)
	SyntheticBeta  float64
	Clients        int    // datasets generated per client (synthetic)
	Seed           uint64 // splits and generation
	// TestOnly says the caller only evaluates (a server): a loader may skip the training set,
	// leaving Federated.Train nil. A CSV file is then the test set as a whole.
	TestOnly bool
	// Raw keeps tabular features as they are; by default a CSV's features are standardised
	// (Standardize) with the statistics of the training split (of the whole file with TestOnly),
	// recorded in Federated.Scaling.
	Raw bool
}

// defaultTargets are the test accuracies the datasets' benchmarks stop at (McMahan et al.'s
// 97.5 % for MNIST's 2NN); datasets without a known target run every round.
var defaultTargets = map[string]float64{"mnist": 0.975}

// DefaultTargetAccuracy is the default --target-accuracy of the named dataset: the accuracy its
// benchmark stops at, or 0 (run every round) for datasets, such as a CSV file, without one.
func DefaultTargetAccuracy(name string) float64 { return defaultTargets[name] }

// Loader loads a dataset: its training and test sets, and the split among clients when the
// dataset is federated by construction (Federated.Clients set; otherwise the caller partitions).
type Loader func(Source) (*Federated, error)

var loaders = map[string]Loader{}

// Register adds a dataset under name; called from an init function in the dataset's file.
func Register(name string, l Loader) {
	if _, dup := loaders[name]; dup {
		panic("data: dataset registered twice: " + name)
	}
	loaders[name] = l
}

// Names lists the registered datasets: mnist first (the default), then the others sorted.
func Names() []string {
	names := make([]string, 0, len(loaders))
	for k := range loaders {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == "mnist":
			return -1
		case b == "mnist":
			return 1
		}
		return strings.Compare(a, b)
	})
	return names
}

// ErrUnknownDataset is returned by Load for a name no dataset registered.
var ErrUnknownDataset = errors.New("unknown dataset")

// Load loads the named dataset.
func Load(name string, src Source) (*Federated, error) {
	l, ok := loaders[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknownDataset, name, strings.Join(Names(), ", "))
	}
	return l(src)
}

// Federate splits f's training set among clients with the named partition, unless the dataset
// came split; withTest also splits the test set IID among them, so federated evaluation
// estimates the same population accuracy from the clients' side.
func (f *Federated) Federate(partition string, clients int, alpha float64, seed uint64, withTest bool) error {
	if f.Clients == nil {
		parts, err := Partition(partition, f.Train.Y, f.Train.Classes, clients, alpha, seed)
		if err != nil {
			return err
		}
		f.Clients = parts
	}
	if withTest && f.TestClients == nil {
		testParts, err := Partition(KindIID, f.Test.Y, f.Test.Classes, min(clients, f.Test.Len()), 0, seed+1)
		if err != nil {
			return fmt.Errorf("split the test set among clients: %w", err)
		}
		f.TestClients = testParts
	}
	return nil
}

func init() {
	Register("mnist", func(s Source) (*Federated, error) {
		if s.TestOnly {
			test, err := LoadMNISTTest(s.Dir)
			return &Federated{Test: test}, err
		}
		train, test, err := LoadMNIST(s.Dir)
		return &Federated{Train: train, Test: test}, err
	})
	Register("csv", func(s Source) (*Federated, error) {
		if s.Path == "" {
			return nil, errors.New("--dataset csv needs --data FILE")
		}
		return loadCSVSource(s)
	})
	Register("synthetic", func(s Source) (*Federated, error) {
		f, err := Synthetic(s.SyntheticAlpha, s.SyntheticBeta, s.Clients, s.Seed)
		if err != nil {
			return nil, fmt.Errorf("--dataset synthetic: %w", err)
		}
		return f, nil
	})
}

// loadCSVSource loads a CSV dataset: split into training and test sets by s.TestFraction, or
// the whole file as the test set for s.TestOnly (a server evaluates on all of its data), and
// standardised unless s.Raw.
func loadCSVSource(s Source) (*Federated, error) {
	all, err := LoadCSVFile(s.Path, s.LabelColumn)
	if err != nil {
		return nil, err
	}
	f := &Federated{Test: all}
	if !s.TestOnly {
		if f.Train, f.Test, err = all.Split(s.TestFraction, s.Seed); err != nil {
			return nil, fmt.Errorf("--test-fraction: %w", err)
		}
	}
	if s.Raw {
		return f, nil
	}
	fit, others := f.Train, []*Dataset{f.Test}
	if fit == nil {
		fit, others = f.Test, nil
	}
	mean, scale, err := Standardize(fit, others...)
	if err != nil {
		return nil, fmt.Errorf("standardise %s: %w", s.Path, err)
	}
	f.Scaling = &Scaling{Mean: mean, Scale: scale}
	return f, nil
}
