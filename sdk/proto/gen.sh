#!/bin/sh
# Regenerates the Go code of the syncpolicy.v1 schema.
# Needs protoc (Debian protobuf-compiler) and
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
set -eu
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH" protoc \
	--proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	syncpolicy/v1/syncpolicy.proto
