// Package fl holds Shoal's core federated-learning types and the round engine.
//
// A round is: the Sampler picks a cohort, the Transport delivers FitIns to each client and
// returns their outcomes, the engine validates each update (dimension, finiteness, weight) and
// drops a bad or late client without stopping the round, the updates are summed (in float64),
// and the Strategy turns the aggregate into the next global model. The same Engine runs the
// in-process simulator (package sim) and, through another Transport, a networked deployment.
//
// fl depends on no other Shoal package except the leaf packages it composes (privacy, secagg,
// he); it must not depend on sim, transport or cmd.
package fl
