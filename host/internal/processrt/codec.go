package processrt

import (
	"context"
	"fmt"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// The hot calls, Map and Reconcile, skip the generated messages: requests
// are encoded and Map responses decoded by sdk/abi's direct codec, and a
// codec that passes wire bytes through carries them (the plugin's half,
// sdk/serve_process.go, does the same). The other calls use the generated
// client. On the wire nothing tells the two apart.

// client is the SyncPolicy service of one plugin process.
type client struct {
	pb.SyncPolicyClient
	conn *grpc.ClientConn
}

// wireMessage is a protobuf message in its wire form.
type wireMessage []byte

// wireCodec passes wireMessage values through as they are and hands every
// other value to the standard protobuf codec.
type wireCodec struct{ proto encoding.CodecV2 }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*wireMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(*m)}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal copies a reply into a buffer of its own, which the decoded
// response aliases.
func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*wireMessage); ok {
		*m = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (wireCodec) Name() string { return grpcproto.Name }

var wire = grpc.ForceCodecV2(wireCodec{encoding.GetCodecV2(grpcproto.Name)})

// mapEntries calls Map with a request encoded by abi.AppendMapRequest.
func (c client) mapEntries(ctx context.Context, req []byte) ([]sdk.Intent, error) {
	in, out := wireMessage(req), wireMessage(nil)
	if err := c.conn.Invoke(ctx, pb.SyncPolicy_Map_FullMethodName, &in, &out, wire); err != nil {
		return nil, err
	}
	resp, err := abi.DecodeMapResponse(out)
	if err != nil {
		return nil, fmt.Errorf("the plugin's map response of %d bytes does not decode: %w", len(out), err)
	}
	return resp.Intents, nil
}

// reconcile calls Reconcile with a request encoded by
// abi.AppendReconcileRequest.
func (c client) reconcile(ctx context.Context, req []byte) (*pb.ReconcileResponse, error) {
	in, out := wireMessage(req), new(pb.ReconcileResponse)
	if err := c.conn.Invoke(ctx, pb.SyncPolicy_Reconcile_FullMethodName, &in, out, wire); err != nil {
		return nil, err
	}
	return out, nil
}
