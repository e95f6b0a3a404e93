package abi

import (
	"errors"
	"fmt"

	"github.com/dirsync/dirsync/sdk"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
)

// Error is an error that a policy stage flagged across the ABI, other than
// an invalid filter (which converts to *sdk.FilterError).
type Error struct {
	// Code classifies the error.
	Code pb.ErrorCode
	// Message is the policy's message (for a panic, the panic value).
	Message string
}

func (e *Error) Error() string {
	switch e.Code {
	case pb.ErrorCode_ERROR_CODE_PANIC:
		return "policy panicked: " + e.Message
	case pb.ErrorCode_ERROR_CODE_BAD_REQUEST:
		return "bad request: " + e.Message
	case pb.ErrorCode_ERROR_CODE_NOT_REGISTERED:
		if e.Message == "" {
			return "no policy registered (sdk.Register was not called)"
		}
		return e.Message
	}
	return e.Message
}

// ErrorToProto converts an error returned by a policy stage. A
// *sdk.FilterError (also when wrapped) keeps its position and reason; an
// *Error keeps its code; any other error becomes ERROR_CODE_UNSPECIFIED with
// err.Error() as the message. nil gives nil.
func ErrorToProto(err error) *pb.Error {
	if err == nil {
		return nil
	}
	var fe *sdk.FilterError
	if errors.As(err, &fe) {
		return &pb.Error{Code: pb.ErrorCode_ERROR_CODE_INVALID_FILTER, Message: fe.Reason, Position: int64(fe.Position)}
	}
	var ae *Error
	if errors.As(err, &ae) {
		return &pb.Error{Code: ae.Code, Message: ae.Message}
	}
	return &pb.Error{Message: err.Error()}
}

// ErrorFromProto converts a flagged error back to a Go error:
// ERROR_CODE_INVALID_FILTER gives a *sdk.FilterError, every other code an
// *Error. nil gives nil.
func ErrorFromProto(m *pb.Error) error {
	if m == nil {
		return nil
	}
	if m.GetCode() == pb.ErrorCode_ERROR_CODE_INVALID_FILTER {
		return &sdk.FilterError{Position: int(m.GetPosition()), Reason: m.GetMessage()}
	}
	return &Error{Code: m.GetCode(), Message: m.GetMessage()}
}

// PanicError converts a value recovered from a panic into a flagged error.
func PanicError(v any) *pb.Error {
	return &pb.Error{Code: pb.ErrorCode_ERROR_CODE_PANIC, Message: fmt.Sprint(v)}
}
