package processrt

import (
	"context"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// TestMapResponses has the client decode what a fake SyncPolicy server
// (in memory, not a plugin) answers to Map: a response the sdk would send,
// and bytes no plugin built with the sdk sends.
func TestMapResponses(t *testing.T) {
	want := sdk.MapResponse{Intents: []sdk.Intent{
		{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "ann@example.com", Aliases: []string{"a@example.com"}}},
		{Kind: sdk.IntentSkip, Reason: "not a user"},
	}}
	good, err := proto.Marshal(abi.MapResponseToProto(want))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		reply []byte
		err   string // "" for want
	}{
		{"intents", good, ""},
		{"empty", nil, ""},
		{"truncated", good[:len(good)-3], "map response of"},
		{"not protobuf", []byte{0xff, 0xff, 0xff}, "does not decode"},
		{"invalid UTF-8", []byte{0x0a, 0x04, 0x12, 0x02, 0xc3, 0x28}, "does not decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeServer(t, tc.reply)
			req, err := abi.AppendMapRequest(nil, sdk.Domain{Name: "example.com"}, []sdk.Entry{{ID: "1"}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.mapEntries(context.Background(), req)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("mapEntries = %v, %v; want an error with %q", got, err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case tc.reply == nil && got != nil:
				t.Fatalf("intents %v, want none", got)
			case tc.reply != nil && !reflect.DeepEqual(got, want.Intents):
				t.Fatalf("intents %#v, want %#v", got, want.Intents)
			}
		})
	}
}

// fakeServer serves Map with reply, whatever the request, and returns a
// client of it.
func fakeServer(t *testing.T, reply []byte) client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ForceServerCodecV2(wireCodec{encoding.GetCodecV2(grpcproto.Name)}))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "syncpolicy.v1.SyncPolicy",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Map", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req wireMessage
			if err := dec(&req); err != nil {
				return nil, err
			}
			out := wireMessage(reply)
			return &out, nil
		}}},
	}, struct{}{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///fake",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return client{pb.NewSyncPolicyClient(conn), conn}
}
