// Package he aggregates model updates under threshold homomorphic encryption.
package he
