// Package fl holds Shoal's core federated-learning types and the Engine that runs a whole
// training: the one-time secure-sum setup (round 0), then round after round until the
// configured rounds, the target accuracy or the privacy budget end it. It is the only round
// loop in Shoal; the simulator (package sim) and a deployment (package
// transport/grpctransport) differ only in the Transport they give it.
//
// A round is: the Sampler picks a cohort from the engine's SamplerSource; the Transport
// delivers FitIns to each client and returns their outcomes; the engine validates each update
// (dimension, finiteness, weight — FitConfig.Weight is the one weighting rule) and drops a bad or
// late client without stopping the round; the updates are summed in float64, or by the
// SecureSum protocol whose stages the engine carries over Transport.Exchange; ServerPrivacy
// (DPFedAvg) noises and accounts; the Strategy turns the aggregate into the next global model.
//
// After every round the engine hands a Checkpoint (model, sampler position, and the state of
// every part that implements Stateful) to its Commit hook before reporting the round; Restore
// takes one back, so a restarted server continues exactly where the last committed round left
// it. Hooks (BeforeRound, Commit, OnRound, OnSetup) are how a command plugs in waiting for
// clients, persistence and progress output; the engine itself does no I/O of its own.
//
// fl depends on no other Shoal package except privacy (noise and accounting); it must not
// depend on sim, transport, store or cmd.
package fl
