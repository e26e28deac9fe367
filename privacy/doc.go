// Package privacy gives Shoal client-level differential privacy in the manner of DP-FedAvg
// (McMahan et al. 2018): clipping of flat update vectors (flat, per-layer and adaptive), Gaussian
// noise drawn exactly on a fine lattice from a cryptographically secure source (immune to the
// floating-point attack of Mironov 2012), the central and local noise placements, and two
// accountants for the Poisson-subsampled Gaussian mechanism: Rényi DP (Mironov, Talwar, Zhang
// 2019, with the improved RDP→(ε, δ) conversion) and a privacy-loss-distribution accountant
// (connect-the-dots discretisation of Doroshenko et al. 2022) that never under-reports ε.
//
// The package works on flat []float32 parameter vectors and float64 sums, as the round engine
// holds them. It is a leaf: it must not depend on any other Shoal package (the engine, the
// strategies and the secure-sum protocols depend on it, never the reverse), and it does no I/O
// beyond reading randomness.
package privacy
