// Command abi2 is a policy plugin of a future ABI major version 2, written
// with go-plugin and the generated gRPC code rather than the sdk: its
// handshake offers protocol version 2.
package main

import (
	"context"

	"github.com/dirsync/dirsync/sdk"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

type server struct {
	pb.UnimplementedSyncPolicyServer
}

func (server) Info(context.Context, *pb.InfoRequest) (*pb.Info, error) {
	return &pb.Info{Name: "abi2", AbiMajor: 2, AbiMinor: 0}, nil
}

type grpcPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterSyncPolicyServer(s, server{})
	return nil
}

func (grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	hs := sdk.Handshake()
	hs.ProtocolVersion = 2
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         plugin.PluginSet{sdk.PluginName: grpcPlugin{}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
