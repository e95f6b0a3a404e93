package policy

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
)

// This file holds what the runtimes of a policy loaded from a file (wasm
// and process) share.

// Label names a policy loaded from path in errors: `policy "name" (file)`,
// or `policy (file)` when the manifest gives no name. Every error of a
// loaded policy starts with it.
func Label(name, path string) string {
	if name == "" {
		return fmt.Sprintf("policy (%s)", filepath.Base(path))
	}
	return fmt.Sprintf("policy %q (%s)", name, filepath.Base(path))
}

// FirstLine returns the first line of s, without the white space around
// it: a runtime's errors are one line.
func FirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

// CheckABI refuses a policy whose ABI major version is not the host's.
func CheckABI(major, minor uint32) error {
	if major != sdk.ABIMajor {
		return ABIError(fmt.Sprintf("%d.%d", major, minor))
	}
	return nil
}

// ABIError says that this host cannot serve a policy of ABI version
// ("2.0", or "2.x" when only the major version is known).
func ABIError(version string) error {
	return fmt.Errorf("ABI version %s is not supported by this host (ABI %d.%d): rebuild the policy with a matching dirsync sdk",
		version, sdk.ABIMajor, sdk.ABIMinor)
}

// ConfigureRequest converts the manifest's [policy.config] table into the
// Configure request of the ABI, in the form every runtime hands to the
// policy (numbers as float64).
func ConfigureRequest(config map[string]any) (*pb.ConfigureRequest, error) {
	req, err := abi.ConfigureRequestToProto(config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return req, nil
}

// EncodeReconcile encodes a Reconcile request with sdk/abi's direct codec.
func EncodeReconcile(req *sdk.ReconcileRequest) ([]byte, error) {
	b, err := abi.AppendReconcileRequest(nil, req)
	if err != nil {
		return nil, fmt.Errorf("reconcile: encoding the request: %w", err)
	}
	return b, nil
}

// CopyInfo returns info with a copy of its attributes: a runtime keeps the
// Info it read at load and hands out copies.
func CopyInfo(info sdk.Info) sdk.Info {
	info.Attributes = append([]string(nil), info.Attributes...)
	return info
}
