//go:build !wasip1

package sdk

import "google.golang.org/grpc"

// Exported for the tests of the plugin-process half (serve_process.go).

// NewPluginServer returns the plugin's gRPC server serving p, as Main makes
// it under go-plugin.
func NewPluginServer(p Policy) *grpc.Server {
	s := newGRPCServer(nil)
	s.RegisterService(&syncPolicyService, newProcessServer(p))
	return s
}

// PluginServiceDesc is the hand-written description of the SyncPolicy
// service.
var PluginServiceDesc = &syncPolicyService

// ServeProcess serves p as Main does and returns the exit status.
var ServeProcess = serveProcess
