// Package shoalv1 is the generated Go code of Shoal's wire protocol (shoal.proto, package
// shoal.v1): messages and the Federation service. Do not edit the .pb.go files; regenerate them
// with go generate (needs protoc and the two plugins named in docs/network.md). It depends on
// protobuf and gRPC only.
package shoalv1

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative shoal.proto
