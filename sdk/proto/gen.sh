#!/bin/sh
# Regenerates the Go code of the syncpolicy.v1 schema: the messages
# (syncpolicy.pb.go) and the gRPC service SyncPolicy that the process
# runtime serves (syncpolicy_grpc.pb.go).
# Needs protoc (Debian protobuf-compiler) and
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# (protoc-gen-go-grpc 1.6 emits code for google.golang.org/grpc 1.64 or
# later; go.mod has 1.85.)
set -eu
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH" protoc \
	--proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	syncpolicy/v1/syncpolicy.proto
