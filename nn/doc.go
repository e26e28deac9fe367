// Package nn is Shoal's small float32 training engine: dense and 2-D convolution layers (each
// optionally followed by a ReLU, fused into it), 2×2 max-pooling and a softmax cross-entropy
// loss, trained by minibatch SGD with momentum, weight decay and an optional FedProx proximal
// term. It builds the models of McMahan et al. 2017 by name ("logreg", "2nn", "cnn").
//
// All parameters of a Model live in one contiguous []float32 (Model.Params) and each layer holds
// views into it, so the federated code can aggregate, clip, add noise to, quantize or encrypt the
// flat vector directly. Activations are kept in NHWC order internally so that a convolution is
// a GEMM over strided views of a padded image (see conv2d).
//
// The matrix kernels are hand-written: AVX-512 or AVX2/FMA assembly on amd64 CPUs that have it
// (chosen by CPUID), portable Go everywhere else (see gemm.go); measured 11–23× faster than
// gonum's Sgemm at the small batch shapes federated training uses.
//
// nn must not depend on any other Shoal package, on I/O, or on global randomness: every random
// choice comes from the *rand.Rand the caller passes in.
package nn
