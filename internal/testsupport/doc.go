// Package testsupport holds the test doubles and helpers shared by the network tests:
//
//   - Trainer, an in-memory fl.Client whose update is a closed-form function of its id, the
//     round and the global model, with FedAvg, the aggregate a round over such trainers must
//     give, and CloseTo to compare models; Echo, a client whose update is as large as the
//     model (benchmarks); Fixed and Trainers, the client runtime's Local for them;
//   - ClearSum, a two-stage secure-sum protocol that hides nothing, to carry stages over a
//     transport;
//   - Engine and its parts (FedAvgStrategy, FullSampler, Source): a one-round FedAvg engine;
//     FitTap and FitErrors, a transport wrapper that shows each client's fit outcome;
//   - Network, an in-memory network (bufconn) for gRPC servers and clients. Unlike loopback
//     TCP it works inside a testing/synctest bubble, where heartbeats, deadlines and backoffs
//     run on the bubble's fake clock;
//   - Go and Proc, a background loop (a client runtime, a server) stopped and awaited at the
//     end of the test; Serve and WaitClients, a server on a listener and its first clients;
//   - Recorder, a slog handler that keeps the records, so a test can wait for an event the
//     code under test logs instead of sleeping;
//   - Recv, a receive with a patience that reports a missing event instead of hanging;
//   - Revocations, an in-memory revocation list for a server's revocation hook, which the
//     server sees change only when it refreshes it, as a list on disk.
//
// Nothing here sleeps. Every wait is for an event, bounded by Patience: on the real clock a
// generous bound that only turns a hang into a clear failure, and inside a synctest bubble an
// exact one on the fake clock.
package testsupport
