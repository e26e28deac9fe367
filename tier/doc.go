// Package tier runs one federated population across several processes, after Bonawitz et al.
// 2019 ("Towards Federated Learning at Scale: System Design"): edges hold the device
// connections and run each aggregation group's sum, and one coordinator per population —
// elected in etcd, with standbys ready to take over — selects the cohort, adds up the group
// sums, applies the strategy and differential privacy, and commits every round to the run store.
//
// The coordinator's round loop is fl.Engine, unchanged: Transport is the coordinator's view of
// the edges (Fit trains the selected devices through the edge that holds them), and the secure
// sum is Grouped, whose one stage asks each group's edge for the group's sum. Devices speak the
// ordinary client protocol (transport/grpctransport) to an edge and cannot tell it from a
// single server.
//
// etcd holds only what must be agreed on and is small: the election, the edges' membership
// (keys under leases), the run record (the run's identity and the protocol devices are
// announced) and per-round metadata (round number, one entry per group). Its writes grow with
// the number of groups, never with the number of devices. The run store (SQLite today,
// PostgreSQL through the same RunStore methods) is the durable truth a new coordinator resumes
// from.
package tier
