// Package he aggregates model updates under threshold homomorphic encryption, so that the
// server adds ciphertexts it cannot read and only a threshold t of a decryption committee
// of K clients, together, can decrypt the aggregate. No party ever holds the secret key.
//
// It depends only on Lattigo (github.com/tuneinsight/lattigo/v6: rlwe, ring, multiparty),
// the standard library and shoal/internal/cputime, and must not depend on any other Shoal
// package (identities come in as an Identity and a Trust, not from package pki): the engine
// (fl, sim, cmd) calls it, never the reverse. The protocol code is a set of pure state
// machines — it does no I/O, owns no clocks, and starts goroutines only inside
// Encryptor.Encrypt to encrypt one update's ciphertexts in parallel; the engine moves the
// messages, applies timeouts and decides who dropped out. RunCeremony and RunRound drive
// the machines in-process (simulation, benchmarks).
//
// # Protocol
//
// Every party that signs holds an Identity (an X.509 certificate and its key, ECDSA P-256 or
// Ed25519, as a crypto.Signer); every party verifies certificates with a Trust: a root it
// holds itself, never one the server sends. Each signature covers a statement that names its
// kind, the run (RunID, 128 random bits the server draws per run and carries in the ceremony)
// and its fields, so that no signature counts in another run, round or role.
//
// Key ceremony (once; members save their KeyMaterial so it is not repeated each round):
//
//  1. The server draws a Ceremony (ID, run ID, parameters, committee, threshold t, and a
//     common reference string) and sends it to the K members.
//  2. Each member (JoinCeremony) draws an RLWE secret s_i and an ephemeral X25519 key and
//     sends a signed KeyCommitment: its X25519 key and the SHA-256 of its collective-public-key
//     share −a·s_i + e_i, with a expanded from the CRS (Mouchet et al. 2021, protocol CKG).
//  3. The server broadcasts the Directory of all K signed commitments. Each member checks
//     every signature against its trust root, the committee order, distinct names and its
//     own entry, then reveals its public-key share (a KeyGenShare, which must match the
//     commitment: no member can choose its share after seeing the others') and shares s_i
//     t-of-K with Lattigo's Thresholdizer (a Shamir polynomial over R_Q; Mouchet, Bertrand and
//     Hubaux 2022), sending each other member its share sealed end to end to the exchange key
//     of the signed directory: X25519 → HKDF-SHA256 (salt = ceremony ID, info binding
//     ceremony, sender, receiver and both public keys) → AES-256-GCM with the ceremony, sender
//     and receiver as associated data. The server relays SealedShares it cannot open.
//  4. The server sends each member all K reveals and its K−1 sealed shares. The member checks
//     the reveals against the commitments, computes the collective public key
//     pk = (Σ(−a·s_i + e_i), a) itself, opens its shares and adds them to its own (its Shamir
//     share of s = Σ s_i; s_i is dropped), and returns an Endorsement: its signature on pk, the
//     ceremony and the committee's certified names.
//  5. The server's PublicSetup (ceremony, pk and the K endorsements) is what every client,
//     committee or not, encrypts under — after verifying every endorsement (PublicSetup.Verify,
//     inside NewEncryptor).
//
// Encrypted round:
//
//  1. A client (Encryptor.Encrypt) scales its update x by its weight w, appends w, and
//     packs (w·x_0, …, w·x_{d−1}, w) into ⌈(d+1)/N⌉ plaintexts, then encrypts each under
//     pk (c0 = u·pk0 + e0 + m, c1 = u·pk1 + e1), in parallel, and signs (run, setup, round,
//     sender, dimension, SHA-256 of the c0 halves, SHA-256 of the c1 halves).
//  2. The server (Aggregator) validates, optionally verifies, and adds each Upload into the
//     running sum as it arrives, keeping each upload's c1 halves and its signed digests (a
//     Contribution); dropouts before upload are simply absent. It never holds an individual
//     plaintext or any key.
//  3. The server closes the round and asks every reachable member to approve its manifest,
//     the sorted contributions (ApprovalRequest). A member (Decryptor.Approve) checks that it
//     holds at least its minimum of contributions (DefaultMinContributors = 3), each signed
//     for this run, setup and round by a distinct certified party, and signs an Approval —
//     for one manifest per round, and never for a round older than one it took part in.
//  4. With ApprovalQuorum = ⌈(K+T)/2⌉ approvals the server picks t members and sends them a
//     DecryptRequest: the manifest, the approvals, and every contribution's c1 halves. Each
//     (Decryptor.ShareEncoded) checks the manifest, the quorum of approvals (signed by the
//     committee names it verified in the ceremony), its round counter, and that each
//     contribution's c1 halves hash to its signed digest; it adds them itself, turns its
//     Shamir share into an additive share s'_j of s for that active set (Lattigo's
//     Combiner: Lagrange coefficients) and returns h_j = c1·s'_j + e_j, e_j the smudging
//     noise: the collective key switch to the zero key (Mouchet et al. 2021, protocol CKS).
//     It releases one share per round.
//  5. The server (Aggregator.Finish) computes c0 + Σ h_j = m + e_ct + Σ e_j and decodes
//     only the aggregate: the weighted sum and the total weight. Fewer than t members, a
//     missing share, fewer approvals than the quorum or fewer contributions than the minimum:
//     an error, nothing decrypted.
//
// # Encoding
//
// Values are fixed-point numbers round(v·Δ) placed in the polynomial coefficients (CKKS's
// coefficient encoding, Lattigo's IsBatched = false), so one ciphertext carries N real
// values in the standard power-of-two cyclotomic ring. The issue suggested CKKS slots in
// the conjugate-invariant ring, which also give N real values; coefficients are better
// here because aggregation needs additions only: no FFT to encode or decode, no √N
// amplification of the decryption noise (which slot decoding applies to every slot),
// and the ring is exactly the one the HE Standard's security table covers. Encoding and
// CRT decoding are exact integer arithmetic (mantissa × 2^e modulo each prime; Garner's
// reconstruction with balanced digits), with no big integers or allocation per value.
//
// # Parameters and security
//
// DefaultParams: N = 2^13, Q = q0·q1 with two 60-bit NTT-friendly primes (log Q = 120.0,
// no auxiliary modulus P), uniform ternary secrets, error σ = 3.2, Δ = 2^85, smudging
// σ_s = 2^63. Table 1 of the Homomorphic Encryption Standard (classical attacks, ternary
// secret) bounds log QP for N = 2^13 by 218 for 128-bit, 152 for 192-bit and 118 for
// 256-bit security: log QP = 120 gives 192 bits. NewParams refuses any set below 128
// bits, and SecurityBits reports the level (same table for N = 2^12 … 2^15).
//
// # Smudging (noise flooding)
//
// Decryption reveals c0 + Σ h_j = m + e_ct + Σ e_j. The ciphertext noise e_ct = Σ over
// clients of (u·e_pk + e0 + e1·s) depends on the secret key; revealed unflooded, it would
// let the server solve for s from (c0, c1) (the CKKS key-recovery attack of Li and
// Micciancio 2021). Mouchet et al. (2021, "Multiparty Homomorphic Encryption from
// Ring-Learning-with-Errors", PETS) prove CKS secure against a passive adversary
// corrupting all but one party when the smudging noise of the honest party
// statistically hides e_ct (their smudging lemma: the outputs are then simulatable from
// the decrypted result alone). We size σ_s for that with one honest member: for Gaussian
// flooding the statistical distance between N(0, σ_s²·I) and N(e_ct, σ_s²·I) over the
// C·N coefficients of a round is at most ‖e_ct‖₂ / (σ_s·√(2π)). Each coefficient of a
// fresh ciphertext's noise has σ_ct = 3.2·√(2·(2N/3)·K + 1) (u and the K summed ternary
// secrets have 2N/3 expected non-zeros; TestFreshNoiseEstimate checks the model against
// measured noise), an aggregate of n uploads √n times that, and ‖e_ct‖₂ ≤ 1.2·σ_ct·√(C·N)
// except with negligible probability. SmudgingSecurityBits computes −log2 of the bound:
// with σ_s = 2^63, for the 2NN model (C = 25 ciphertexts) it is 44.4 bits with 10 clients
// and K = 3, 40.7 bits with 1,000 clients and K = 5, 39.7 with K = 20, 39.1 with 10,000
// clients — about 40-bit statistical security per decryption. Every extra decryption of
// an aggregate (an honest member answers once per round, but with t−1 colluders the server
// may get one decryption per honest member) and every round adds its distance (union bound). Lattigo's own flooding sampler works in float64
// and cannot draw σ ≥ 2^50 with every low bit random, so the shares are computed as
// c1·s'_j (exactly KeySwitchProtocol.GenShare with skOut = 0) plus the package's own
// sampler: a sum of rounded Gaussians round(z_0·2^63) + round(z_1·2^40) + round(z_2·2^17),
// z_k ~ N(0, 1) from ChaCha8 seeded by crypto/rand, each component smoothing the output
// grid of the one before (NormFloat64 has 32-bit resolution, so z·2^63 alone would only
// take values 2^34 apart and leave the low bits of e_ct readable). The total σ is
// 2^63·(1 + 2^−46); TestSmudgingNoiseIsFullResolution checks σ and the uniformity of the
// low bits at every scale.
//
// Precision follows: each decoded coordinate of the weighted sum carries noise of
// standard deviation σ_s·√t/Δ = 2^−22·√t; MaxAbsError(t) = 7·σ_s·√t/Δ (2.9·10⁻⁶ for
// t = 3) bounds it, and the tests assert it on sums of 10 to 1,000 updates in [−1, 1]
// with weights up to 600. Σ|w·x_i| per coordinate and Σ w must stay below Capacity
// (1.7·10¹⁰ for the default set); beyond it the decryption wraps modulo Q.
//
// # Threat model and limits
//
// The server may deviate from the protocol in any way; up to t−1 committee members may collude
// with it; the certificate authority is trusted and every party verifies certificates against
// the CA certificate it holds. Then the server cannot substitute the key clients encrypt
// under (all K members endorse it, each having recomputed it from committed shares), open
// the sealed shares (sealed to signed exchange keys), or have anything decrypted but the sum
// of at least the members' minimum of distinct signed uploads of one round, one approved
// set per round (two approval quorums share an honest member, so two sets of a round that
// differ by one client can never both be decrypted). Still open: a client colluding with the
// server can sign, after seeing the others, a ciphertext that cancels all but a victim's c1
// (uploads are not committed before they are revealed); the server chooses the committee and
// which signed uploads are summed; parties do not see the revocation list; a member can make
// a ceremony or a round fail (no verifiable secret sharing). Each active member downloads
// and re-adds every contribution's c1 halves: 3.3 MB per 2NN upload. A ceremony needs all K
// members online; if one drops, run a new ceremony without it. All key material and
// encryption randomness come from crypto/rand (through Lattigo's samplers and the io.Reader
// given to NewCeremony/JoinCeremony); there is no seeded mode for keys. docs/he.md has the
// full threat model.
package he
