// Package tierv1 is the generated Go code of Shoal's tier protocol (tier.proto, package
// shoal.tier.v1): the Edge service the coordinator of a population calls on its edges. Do not
// edit the .pb.go files; regenerate them with go generate (protoc and the plugins named in
// docs/network.md).
package tierv1

//go:generate protoc --proto_path=. --proto_path=../../v1 --go_out=. --go_opt=paths=source_relative --go_opt=Mshoal.proto=shoal/proto/shoal/v1 --go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt=Mshoal.proto=shoal/proto/shoal/v1 tier.proto
