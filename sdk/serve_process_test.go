//go:build !wasip1

package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	"github.com/dirsync/dirsync/sdk/internal/fixture"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestPluginServiceDesc checks the hand-written service description of the
// plugin against the generated one: the same service and methods.
func TestPluginServiceDesc(t *testing.T) {
	got, want := sdk.PluginServiceDesc, &pb.SyncPolicy_ServiceDesc
	if got.ServiceName != want.ServiceName || got.Metadata != want.Metadata || len(got.Streams) != len(want.Streams) {
		t.Errorf("service %q (%v), want %q (%v)", got.ServiceName, got.Metadata, want.ServiceName, want.Metadata)
	}
	var gotNames, wantNames []string
	for _, m := range got.Methods {
		gotNames = append(gotNames, m.MethodName)
	}
	for _, m := range want.Methods {
		wantNames = append(wantNames, m.MethodName)
	}
	if !reflect.DeepEqual(gotNames, wantNames) {
		t.Errorf("methods %v, want %v", gotNames, wantNames)
	}
}

// dialPlugin serves p with the plugin's gRPC server on a local socket and
// returns the generated client.
func dialPlugin(t *testing.T, p sdk.Policy) pb.SyncPolicyClient {
	t.Helper()
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "plugin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	s := sdk.NewPluginServer(p)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("unix:"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxPluginMessage), grpc.MaxCallSendMsgSize(sdk.MaxPluginMessage)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewSyncPolicyClient(conn)
}

// flagged returns the syncpolicy.v1.Error an error of a call carries.
func flagged(t *testing.T, err error) (codes.Code, *pb.Error) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	for _, d := range st.Details() {
		if e, ok := d.(*pb.Error); ok {
			return st.Code(), e
		}
	}
	t.Fatalf("status %v carries no syncpolicy.v1.Error", st)
	return 0, nil
}

// countingPolicy is not safe for concurrent use: the race detector sees it
// if the plugin calls its stages concurrently.
type countingPolicy struct {
	testPolicy
	calls int
}

func (p *countingPolicy) Map(r sdk.MapRequest) (sdk.MapResponse, error) {
	p.calls++
	out := sdk.MapResponse{Intents: make([]sdk.Intent, len(r.Entries))}
	for i, e := range r.Entries {
		out.Intents[i] = sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: e.ID, MemberOf: e.Attributes["memberof"]}}
	}
	return out, nil
}

func TestPluginServer(t *testing.T) {
	ctx := context.Background()
	c := dialPlugin(t, &countingPolicy{})

	info, err := c.Info(ctx, &pb.InfoRequest{})
	if err != nil || info.GetName() != "test" {
		t.Errorf("Info: %v, %v", info, err)
	}
	cfg, _ := abi.ConfigureRequestToProto(map[string]any{"a": 1.0})
	if _, err := c.Configure(ctx, cfg); err != nil {
		t.Errorf("Configure: %v", err)
	}
	f, err := c.Filter(ctx, &pb.FilterRequest{Filter: "(CN=X)"})
	if err != nil || f.GetFilter() != "(cn=x)" {
		t.Errorf("Filter: %v, %v", f, err)
	}
	if _, err := c.Reconcile(ctx, abi.ReconcileRequestToProto(sdk.ReconcileRequest{Changes: []sdk.Change{{Kind: sdk.ChangeCreate}}})); err != nil {
		t.Errorf("Reconcile: %v", err)
	}

	// A Map over gRPC's default limit of 4 MiB, both ways.
	es := fixture.Entries(3000)
	for i := range es {
		es[i].ID = fmt.Sprint("id-", i)
		es[i].Attributes["memberof"] = fixture.Values(60)
	}
	req := abi.MapRequestToProto(sdk.MapRequest{Domain: domain(), Entries: es})
	if n := proto.Size(req); n <= 4<<20 {
		t.Fatalf("request of %d bytes", n)
	}
	m, err := c.Map(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if n := proto.Size(m); n <= 4<<20 {
		t.Errorf("reply of %d bytes", n)
	}
	got := abi.MapResponseFromProto(m)
	if len(got.Intents) != len(es) || got.Intents[7].Mailbox.Primary != "id-7" || !reflect.DeepEqual(got.Intents[7].Mailbox.MemberOf, es[7].Attributes["memberof"]) {
		t.Errorf("Map gave %d intents, the 8th %+v", len(got.Intents), got.Intents[7].Mailbox)
	}

	// Concurrent calls: the policy sees them one at a time.
	var wg sync.WaitGroup
	small := abi.MapRequestToProto(sdk.MapRequest{Entries: fixture.Entries(50)})
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if _, err := c.Map(ctx, small); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestPluginServerErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		p        sdk.Policy
		call     func(pb.SyncPolicyClient) error
		code     codes.Code
		errCode  pb.ErrorCode
		contains string
		position int64
	}{
		{name: "invalid filter", p: testPolicy{fail: true},
			call: func(c pb.SyncPolicyClient) error {
				_, err := c.Filter(ctx, &pb.FilterRequest{Filter: "(x"})
				return err
			},
			code: codes.InvalidArgument, errCode: pb.ErrorCode_ERROR_CODE_INVALID_FILTER, contains: "nope", position: 3},
		{name: "config refused", p: testPolicy{fail: true},
			call: func(c pb.SyncPolicyClient) error { _, err := c.Configure(ctx, &pb.ConfigureRequest{}); return err },
			code: codes.Unknown, errCode: pb.ErrorCode_ERROR_CODE_UNSPECIFIED, contains: "bad config"},
		{name: "panic", p: testPolicy{panics: true},
			call: func(c pb.SyncPolicyClient) error { _, err := c.Info(ctx, &pb.InfoRequest{}); return err },
			code: codes.Internal, errCode: pb.ErrorCode_ERROR_CODE_PANIC, contains: "info exploded (at "},
		{name: "runtime error panic", p: testPolicy{panics: true},
			call: func(c pb.SyncPolicyClient) error {
				_, err := c.Map(ctx, &pb.MapRequest{Entries: []*pb.Entry{{Id: "x"}}})
				return err
			},
			code: codes.Internal, errCode: pb.ErrorCode_ERROR_CODE_PANIC, contains: "assignment to entry in nil map"},
		{name: "not registered", p: nil,
			call: func(c pb.SyncPolicyClient) error { _, err := c.Info(ctx, &pb.InfoRequest{}); return err },
			code: codes.FailedPrecondition, errCode: pb.ErrorCode_ERROR_CODE_NOT_REGISTERED, contains: "no policy registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialPlugin(t, tc.p)
			err := tc.call(c)
			if err == nil {
				t.Fatal("no error")
			}
			code, e := flagged(t, err)
			if code != tc.code || e.GetCode() != tc.errCode || !strings.Contains(e.GetMessage(), tc.contains) || e.GetPosition() != tc.position {
				t.Errorf("status %s with %v, want %s with code %s, position %d, a message containing %q", code, e, tc.code, tc.errCode, tc.position, tc.contains)
			}
			if tc.errCode == pb.ErrorCode_ERROR_CODE_INVALID_FILTER {
				var fe *sdk.FilterError
				if !errors.As(abi.ErrorFromProto(e), &fe) || fe.Position != 3 || fe.Reason != "nope" {
					t.Errorf("converts to %v", abi.ErrorFromProto(e))
				}
			}
			if tc.p != nil { // the server carries on
				if _, err := c.Reconcile(ctx, &pb.ReconcileRequest{}); err != nil {
					t.Errorf("next call: %v", err)
				}
			}
		})
	}
}

// helperEnv makes the test binary run ServeProcess (see TestRunByHand).
const helperEnv = "SDK_TEST_SERVE_PROCESS"

func TestServeProcessHelper(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("a helper of TestRunByHand")
	case "registered":
		os.Exit(sdk.ServeProcess(testPolicy{}))
	default:
		os.Exit(sdk.ServeProcess(nil))
	}
}

// TestRunByHand runs a plugin program without the host's magic cookie: it
// says what it is in one line and exits with status 1.
func TestRunByHand(t *testing.T) {
	prog := filepath.Base(os.Args[0])
	for _, tc := range []struct{ mode, want string }{
		{"registered", prog + fmt.Sprintf(`: the dirsync policy plugin "test" (ABI %d.%d), not meant to be run by hand: dirsync starts it when plugin.toml declares it with runtime = "process"`, sdk.ABIMajor, sdk.ABIMinor) + "\n"},
		{"nil", prog + ": a dirsync policy plugin, but no policy registered: call sdk.Register from an init function of the plugin's main package (a WebAssembly reactor module never runs main)\n"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestServeProcessHelper$")
		cmd.Env = append(os.Environ(), helperEnv+"="+tc.mode)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%s: %v, want exit status 1", tc.mode, err)
		}
		if stderr.String() != tc.want {
			t.Errorf("%s: stderr %q, want %q", tc.mode, stderr.String(), tc.want)
		}
	}
}
