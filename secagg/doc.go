// Package secagg implements secure aggregation for federated learning: the protocol of
// Bonawitz et al. ("Practical Secure Aggregation for Privacy-Preserving Machine Learning",
// CCS 2017) and its SecAgg+ variant of Bell et al. (CCS 2020), in which each client is paired
// only with its neighbours on a random k-regular Harary graph. The complete graph is the special
// case that gives the original protocol.
//
// The server learns only the sum, in the ring Z_{2^k}, of the quantised updates of the clients
// that survive the round, even when clients drop out at any stage. Updates are clipped to
// [-ClipRange, ClipRange], stochastically rounded to Bits bits (unbiased; redrawn until the
// rounded update's L2 norm is within NormBound of the clipped one's, so that a differentially
// private sum's sensitivity is known: conditional rounding, Kairouz, Liu and Steinke, ICML 2021),
// and the example weight travels as one more coordinate; k = Bits + ceil(log2 n), so a sum of
// honest inputs never wraps. A client can still shift the sum by any constant (the masks cancel
// whatever it sends): the server refuses a sum outside the range honest inputs add up to
// (FeasibleSum) and abandons the round.
//
// The protocol is written as pure state machines (see Client and Server): no I/O, goroutines or
// clocks. A Client or Server takes a message (bytes) and returns messages; the engine moves the
// bytes, applies timeouts, and tells the Server when a stage is over (Server.Advance) or that a
// client is gone (Server.MarkDropped). Every message carries a version, its type, the round and
// the sender and recipient, and is rejected when stale, replayed, duplicated or out of stage.
// Config.RunID, drawn by the server once per run, is bound into every signature, derived key and
// commitment, so that nothing from one run (whose rounds also start at 1) is accepted in another.
// RunRound drives one complete round in-process, with dropouts injected at any stage, for the
// benchmarks (RunBench) and the tests; the federated round engine (package fl) drives the same
// state machines through the adapter in package securesum, one stage per network exchange.
//
// Primitives: X25519 key agreement (RFC 7748; computed with circl's assembly implementation,
// tested equal to crypto/ecdh) with HKDF-SHA256; AES-128-GCM for the encrypted shares with run,
// round, sender and receiver as associated data; AES-128-CTR as the PRG that expands seeds into masks
// (measured 7 GB/s here against 0.6 GB/s for ChaCha20); Shamir secret sharing over GF(2^61-1);
// Ed25519 signatures for the malicious-server variant (AdvertiseKeys and ConsistencyCheck).
//
// This package must not depend on other Shoal packages; it depends only on the standard library,
// golang.org/x/crypto and github.com/cloudflare/circl.
package secagg
