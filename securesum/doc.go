// Package securesum adapts Shoal's secure-aggregation protocols to the round engine's
// fl.SecureSum seam: SecAgg and SecAgg+ (package secagg) and threshold CKKS (package he).
//
// Each adapter keeps the protocols' pure state machines intact and adds only what the engine
// needs: the mapping from federation client IDs to the protocol's cohort indices, a setup
// message that tells each client the round's public parameters, and the encoding of a client's
// weighted update (and its unclipped bit, for adaptive clipping) into the protocol's input.
//
// New builds a protocol by name from a Spec — the server's half and, through FromWire, every
// client's from the Spec the server announces — so that the simulator, the server and the network
// client construct protocols in one place. A new backend is one line in the backends table.
//
// securesum depends on fl, secagg, he and pki (a deployment process's identity and trust root for
// threshold HE); only cmd depends on it.
package securesum
