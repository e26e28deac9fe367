package data

import (
	"fmt"
	"math"
)

// Synthetic(α, β) dimensions, as in Li et al. (FedProx, MLSys 2020), §5.1 and their generator.
const (
	syntheticDim     = 60
	syntheticClasses = 10
	// maxSyntheticExamples bounds the lognormal client sizes' total (≈ 450 per client on
	// average, heavy-tailed) so a huge client count fails clearly instead of exhausting memory.
	maxSyntheticExamples = 20_000_000
	// maxSyntheticSpread bounds α and β far above any useful value (the paper uses ≤ 1) and far
	// below where features or logits would overflow.
	maxSyntheticSpread = 1e6
)

// Synthetic generates Synthetic(α, β) of Li et al. (FedProx, MLSys 2020): 60 features, 10 classes.
// Client k draws u_k ~ N(0, α²) and B_k ~ N(0, β²); its model W_k ∈ R^{60×10}, b_k ∈ R^10 has
// entries ~ N(u_k, 1); its features x ~ N(v_k, Σ) with v_k entries ~ N(B_k, 1) and Σ diagonal,
// Σ_jj = j^−1.2; its labels are y = argmax(W_kᵀx + b_k). Client sizes are ⌊lognormal(4, 2)⌋ + 50
// as in the authors' generator. α controls how much the local models differ, β how much the
// local feature distributions differ; Synthetic(0, 0) is the mildest non-IID setting.
//
// Each client's examples are split 80/20 into its training and test part: Train and Test pool
// them client after client, Clients[k] and TestClients[k] index client k's parts. Deterministic
// for a seed.
func Synthetic(alpha, beta float64, clients int, seed uint64) (*Federated, error) {
	return synthetic(alpha, beta, false, clients, seed)
}

// SyntheticIID generates the Synthetic-IID dataset of the same paper: every client shares one
// model W, b (entries ~ N(0, 1)) and one feature distribution x ~ N(0, Σ); client sizes and the
// 80/20 split are as in Synthetic. It is the IID baseline for Synthetic(α, β).
func SyntheticIID(clients int, seed uint64) (*Federated, error) {
	return synthetic(0, 0, true, clients, seed)
}

func synthetic(alpha, beta float64, iid bool, clients int, seed uint64) (*Federated, error) {
	switch {
	case !(alpha >= 0 && alpha <= maxSyntheticSpread):
		return nil, fmt.Errorf("synthetic data: alpha = %v, want 0 ≤ alpha ≤ %g (the paper uses 0, 0.5, 1)", alpha, maxSyntheticSpread)
	case !(beta >= 0 && beta <= maxSyntheticSpread):
		return nil, fmt.Errorf("synthetic data: beta = %v, want 0 ≤ beta ≤ %g (the paper uses 0, 0.5, 1)", beta, maxSyntheticSpread)
	case clients < 1:
		return nil, fmt.Errorf("synthetic data: %d clients, want at least 1", clients)
	}
	r := newRand(seed, streamSynthetic)

	sizes := make([]int, clients)
	total := 0
	for k := range sizes {
		sizes[k] = int(math.Exp(4+2*r.NormFloat64())) + 50
		total += sizes[k]
		if total > maxSyntheticExamples {
			return nil, fmt.Errorf("synthetic data: %d clients would need more than %d examples; use fewer clients", clients, maxSyntheticExamples)
		}
	}
	modelMean := make([]float64, clients) // u_k
	for k := range modelMean {
		modelMean[k] = alpha * r.NormFloat64()
	}
	featureShift := make([]float64, clients) // B_k
	for k := range featureShift {
		featureShift[k] = beta * r.NormFloat64()
	}
	var sd [syntheticDim]float64 // √Σ_jj
	for j := range sd {
		sd[j] = math.Pow(float64(j+1), -0.6)
	}

	nTrain := 0
	for _, n := range sizes {
		nTrain += trainShare(n)
	}
	name := fmt.Sprintf("synthetic(%g,%g)", alpha, beta)
	if iid {
		name = "synthetic-iid"
	}
	train := syntheticDataset(name+"-train", nTrain)
	test := syntheticDataset(name+"-test", total-nTrain)
	fed := &Federated{Train: train, Test: test, Clients: make([][]int, clients), TestClients: make([][]int, clients)}

	var mean [syntheticDim]float64
	var w [syntheticDim * syntheticClasses]float64 // row-major: feature j, class c at j*10+c
	var b, logits [syntheticClasses]float64
	var x [syntheticDim]float64
	if iid { // one global model; features centred at 0 for every client
		for i := range w {
			w[i] = r.NormFloat64()
		}
		for c := range b {
			b[c] = r.NormFloat64()
		}
	}
	trainAt, testAt := 0, 0
	for k, n := range sizes {
		if !iid {
			for j := range mean {
				mean[j] = featureShift[k] + r.NormFloat64()
			}
			for i := range w {
				w[i] = modelMean[k] + r.NormFloat64()
			}
			for c := range b {
				b[c] = modelMean[k] + r.NormFloat64()
			}
		}
		nk := trainShare(n)
		fed.Clients[k] = indexRange(trainAt, nk)
		fed.TestClients[k] = indexRange(testAt, n-nk)
		for e := range n {
			logits = b
			for j := range x {
				x[j] = mean[j] + sd[j]*r.NormFloat64()
				row := w[j*syntheticClasses : (j+1)*syntheticClasses]
				for c := range logits {
					logits[c] += x[j] * row[c]
				}
			}
			label := int32(0)
			for c := range logits {
				if logits[c] > logits[label] {
					label = int32(c)
				}
			}
			d, at := train, trainAt
			if e >= nk {
				d, at = test, testAt
				testAt++
			} else {
				trainAt++
			}
			dst := d.X[at*syntheticDim : (at+1)*syntheticDim]
			for j := range dst {
				dst[j] = float32(x[j])
			}
			d.Y[at] = label
		}
	}
	return fed, nil
}

// trainShare is the training part of a client with n examples (80%, rounded down).
func trainShare(n int) int { return 4 * n / 5 }

func syntheticDataset(name string, n int) *Dataset {
	return &Dataset{
		Name: name, X: make([]float32, n*syntheticDim), Y: make([]int32, n),
		Dim: syntheticDim, C: 1, H: 1, W: syntheticDim, Classes: syntheticClasses,
	}
}

// indexRange returns the indices start, start+1, …, start+n-1.
func indexRange(start, n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = start + i
	}
	return idx
}
