//go:build !wasip1

package sdk

// The plugin-process half of the policy ABI: outside WebAssembly, Main
// serves the registered policy as a hashicorp/go-plugin plugin over gRPC,
// the service syncpolicy.v1.SyncPolicy (sdk/proto/syncpolicy/v1). The host
// half is the process runtime of the dirsync host.
//
// The messages are those of the wasm ABI, and so is the codec: requests are
// decoded and replies encoded by wire.go, the code a wasm guest runs, through
// handle (guest.go). Package sdk cannot convert with package sdk/abi, which
// imports it. So the gRPC service is registered here with a hand-written
// service description whose handlers take and return raw protobuf bytes
// (rawMessage), and the server's codec passes those through; go-plugin's own
// services on the same server (health, broker, controller, stdio) keep the
// standard protobuf codec. On the wire nothing tells the two apart: the host
// uses the generated client (syncpolicy_grpc.pb.go).
//
// A stage's error travels as the gRPC status of the call, with the same
// syncpolicy.v1.Error message a wasm reply envelope carries as its one
// detail: code, message and, for an invalid filter, the byte position. A
// panic in a stage is recovered into an ERROR_CODE_PANIC error; the process
// carries on serving.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The go-plugin handshake of a policy plugin process. The host sets the
// magic cookie in the plugin's environment; a plugin started without it was
// run by hand, and says so. The protocol version is the ABI's major
// version: a host and a plugin of different majors refuse each other
// before any call.
const (
	PluginMagicCookieKey   = "DIRSYNC_POLICY_PLUGIN"
	PluginMagicCookieValue = "c2b1d3f0-syncpolicy-v1"
	PluginProtocolVersion  = ABIMajor
	// PluginName is the name the policy is served under in go-plugin's
	// plugin set.
	PluginName = "syncpolicy"
)

// MaxPluginMessage is the largest gRPC message, request or reply, that a
// plugin process accepts and sends (the host uses the same limit). gRPC's
// default, 4 MiB, is a Map of about 10,000 directory users.
const MaxPluginMessage = 1 << 30

// Handshake returns the go-plugin handshake of a policy plugin process.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  PluginProtocolVersion,
		MagicCookieKey:   PluginMagicCookieKey,
		MagicCookieValue: PluginMagicCookieValue,
	}
}

// serveProcess serves p as a plugin process and returns the exit status.
// Run by hand (without the host's magic cookie) it prints one line saying
// what the program is and returns 1. A nil p is served too when the host
// starts the program: every stage then fails with ERROR_CODE_NOT_REGISTERED,
// so that the host's load error says what is wrong.
func serveProcess(p Policy) int {
	if os.Getenv(PluginMagicCookieKey) != PluginMagicCookieValue {
		fmt.Fprintln(os.Stderr, byHandMessage(p))
		return 1
	}
	watchParent()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(),
		Plugins:         plugin.PluginSet{PluginName: &grpcPlugin{srv: newProcessServer(p)}},
		GRPCServer:      newGRPCServer,
	})
	// Serve returns when the host shuts the plugin down.
	return 0
}

// byHandMessage is the one line a plugin program prints when it is run by
// hand.
func byHandMessage(p Policy) string {
	prog := filepath.Base(os.Args[0])
	if p == nil {
		return prog + ": a dirsync policy plugin, but " + notRegisteredMessage
	}
	what := "a dirsync policy plugin"
	if info, ok := safeInfo(p); ok && info.Name != "" {
		what = fmt.Sprintf("the dirsync policy plugin %q", info.Name)
		if info.Version != "" {
			what += " " + info.Version
		}
	}
	return fmt.Sprintf("%s: %s (ABI %d.%d), not meant to be run by hand: dirsync starts it when plugin.toml declares it with runtime = \"process\"",
		prog, what, ABIMajor, ABIMinor)
}

func safeInfo(p Policy) (info Info, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return p.Info(), true
}

// watchParent ends the plugin when the host that started it is gone. On
// Linux the host has the kernel kill the plugin when it dies (Pdeathsig);
// elsewhere, or for a host that did not ask for that, this is the backstop:
// a process whose parent dies is adopted by another, and its parent process
// id changes. go-plugin's server does not notice by itself: it keeps
// listening on its socket.
func watchParent() {
	ppid := os.Getppid()
	if runtime.GOOS == "windows" || ppid <= 1 {
		return
	}
	go func() {
		for range time.Tick(parentPollInterval) {
			if os.Getppid() != ppid {
				os.Exit(1)
			}
		}
	}()
}

const parentPollInterval = time.Second

// newGRPCServer makes the plugin's gRPC server: message limits raised to
// MaxPluginMessage, and the codec that lets the SyncPolicy handlers see raw
// bytes.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.MaxRecvMsgSize(MaxPluginMessage),
		grpc.MaxSendMsgSize(MaxPluginMessage),
		grpc.ForceServerCodecV2(rawCodec{encoding.GetCodecV2(grpcproto.Name)}),
	)
	return grpc.NewServer(opts...)
}

// grpcPlugin is the go-plugin side of the SyncPolicy service. Only the
// plugin process uses it: a host talks to the service with the generated
// client.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv *processServer
}

func (g *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&syncPolicyService, g.srv)
	return nil
}

func (g *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("the dirsync sdk serves policies; a host dials them with package syncpolicyv1")
}

// rawMessage is a protobuf message in its wire form.
type rawMessage []byte

// rawCodec passes rawMessage values through as they are and hands every
// other value to the standard protobuf codec.
type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(*m)}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal copies a request into a buffer of its own: the decoded request
// aliases it (wire.go), and the policy may keep its strings.
func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*rawMessage); ok {
		*m = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (rawCodec) Name() string { return grpcproto.Name }

// processServer serves one policy. It calls the policy's stages one at a
// time (a Policy need not be safe for concurrent use), but decodes requests
// and encodes replies of concurrent calls meanwhile: the host maps batches
// from several goroutines. As with a policy linked into the host, a reply
// is encoded after the stage returned, so a stage must not change what it
// returned in a later call.
type processServer struct {
	p Policy
}

func newProcessServer(p Policy) *processServer {
	if p == nil {
		return &processServer{} // every stage: ERROR_CODE_NOT_REGISTERED
	}
	return &processServer{p: serialPolicy{new(sync.Mutex), p}}
}

// serialPolicy calls the stages of a Policy one at a time.
type serialPolicy struct {
	mu *sync.Mutex
	p  Policy
}

func (s serialPolicy) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p.Info()
}

func (s serialPolicy) Configure(config map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p.Configure(config)
}

func (s serialPolicy) Filter(r FilterRequest) (FilterResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p.Filter(r)
}

func (s serialPolicy) Map(r MapRequest) (MapResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p.Map(r)
}

func (s serialPolicy) Reconcile(r ReconcileRequest) (ReconcileResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p.Reconcile(r)
}

// syncPolicyService describes the service syncpolicy.v1.SyncPolicy with
// handlers on raw messages. Its names are those of the generated
// pb.SyncPolicy_ServiceDesc (a test checks it).
var syncPolicyService = grpc.ServiceDesc{
	ServiceName: pb.SyncPolicy_ServiceDesc.ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Info", Handler: stageHandler(stageInfo, pb.SyncPolicy_Info_FullMethodName)},
		{MethodName: "Configure", Handler: stageHandler(stageConfigure, pb.SyncPolicy_Configure_FullMethodName)},
		{MethodName: "Filter", Handler: stageHandler(stageFilter, pb.SyncPolicy_Filter_FullMethodName)},
		{MethodName: "Map", Handler: stageHandler(stageMap, pb.SyncPolicy_Map_FullMethodName)},
		{MethodName: "Reconcile", Handler: stageHandler(stageReconcile, pb.SyncPolicy_Reconcile_FullMethodName)},
	},
	Metadata: pb.SyncPolicy_ServiceDesc.Metadata,
}

// stageHandler is the gRPC handler of one stage.
func stageHandler(s stage, fullMethod string) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := new(rawMessage)
		if err := dec(req); err != nil {
			return nil, err
		}
		call := func(_ context.Context, req any) (any, error) {
			return srv.(*processServer).call(s, *req.(*rawMessage))
		}
		if interceptor == nil {
			return call(ctx, req)
		}
		return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}, call)
	}
}

// call runs stage s on an encoded request and returns the encoded response,
// or the stage's error as a gRPC status carrying a syncpolicy.v1.Error.
func (ps *processServer) call(s stage, req []byte) (any, error) {
	reply := handle(ps.p, s, req) // recovers a panic of the policy
	result, errMsg, err := splitReply(reply)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "the sdk made a reply that does not decode: %v", err)
	}
	if errMsg != nil {
		return nil, errorStatus(errMsg)
	}
	out := rawMessage(result)
	return &out, nil
}

// splitReply takes a reply envelope (InfoReply, …, ReconcileReply) apart:
// the encoded result, or the encoded Error.
func splitReply(b []byte) (result, errMsg []byte, err error) {
	found := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != replyResult && num != replyError) {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		found = true
		if num == replyResult {
			result, errMsg = v, nil
		} else {
			result, errMsg = nil, v
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("neither a result nor an error")
	}
	if result == nil && errMsg == nil {
		result = []byte{}
	}
	return result, errMsg, nil
}

// errorStatus makes the gRPC status of a flagged error: a code for gRPC's
// sake, the policy's message, and the Error itself as the one detail.
func errorStatus(b []byte) error {
	e := new(pb.Error)
	if err := proto.Unmarshal(b, e); err != nil {
		return status.Errorf(codes.Internal, "the sdk made an error reply that does not decode: %v", err)
	}
	code := codes.Unknown
	switch e.GetCode() {
	case pb.ErrorCode_ERROR_CODE_INVALID_FILTER, pb.ErrorCode_ERROR_CODE_BAD_REQUEST:
		code = codes.InvalidArgument
	case pb.ErrorCode_ERROR_CODE_PANIC:
		code = codes.Internal
	case pb.ErrorCode_ERROR_CODE_NOT_REGISTERED:
		code = codes.FailedPrecondition
	}
	st, err := status.New(code, e.GetMessage()).WithDetails(e)
	if err != nil {
		return status.Error(code, e.GetMessage())
	}
	return st.Err()
}
