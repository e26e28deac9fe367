// Package grpctransport runs Shoal's round engine over the network: a Server that implements
// fl.Transport over the clients connected to it by gRPC (wire protocol shoal.v1, package
// shoal/proto/shoal/v1), and the client runtime (RunClient) that dials out, holds one stream,
// and answers fit, evaluate and secure-sum tasks with a local fl.Client and the run's
// fl.SumClient.
//
// Every payload travels in bounded chunks with its size and CRC-32C announced first; every
// answer must match a task outstanding on its own connection (run, round, stage, task id), so
// stale, replayed, foreign, malformed and oversized messages are refused and only the offending
// client is cut off. A client that disconnects or stays silent past its heartbeat deadline is
// delivered to the engine as failed; nothing waits past the engine's context.
//
// grpctransport depends on fl, the generated protocol code, gRPC and Prometheus; it knows
// nothing of datasets, models, certificates or storage (the command wires those in) and must
// not depend on sim or cmd.
package grpctransport
