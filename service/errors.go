package service

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// invalidArgument reports a malformed request, naming the field in a BadRequest detail so
// that clients can point at it.
func invalidArgument(field, description string) error {
	st := status.New(codes.InvalidArgument, field+": "+description)
	if d, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: description}},
	}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// unimplemented answers an RPC whose capability is not configured or not built yet.
func unimplemented(what string) error {
	return status.Error(codes.Unimplemented, what)
}

// unauthenticated refuses an RPC whose caller gave no valid credentials (AdminService).
func unauthenticated(what string) error {
	return status.Error(codes.Unauthenticated, what)
}

// permissionDenied refuses an RPC to an authenticated caller without the right to make it.
func permissionDenied(what string) error {
	return status.Error(codes.PermissionDenied, what)
}

// failedPrecondition refuses an RPC that the server's state or configuration does not allow
// (a capability turned off, a key owned by the config file, no config file to reload).
func failedPrecondition(what string) error {
	return status.Error(codes.FailedPrecondition, what)
}

// notFound reports that the named object (an API key) does not exist.
func notFound(what string) error {
	return status.Error(codes.NotFound, what)
}

// unavailable reports that a backend is down and policy says fail closed.
func unavailable(what string) error {
	return status.Error(codes.Unavailable, what+" is unavailable; retry later")
}

// dependencyDown reports whether err says that a dependency (a store, an identity provider)
// could not answer in time: UNAVAILABLE, or the caller's deadline. Check answers such a
// failure with a 503 decision instead of the error.
func dependencyDown(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.DeadlineExceeded
}

// internal logs err and answers a generic INTERNAL: details stay in Warden's log.
func internal(ctx context.Context, log *slog.Logger, op string, err error) error {
	if e := fromContext(ctx, err); e != nil {
		return e
	}
	log.ErrorContext(ctx, "internal error", "op", op, "err", err)
	return status.Error(codes.Internal, "internal error")
}

// fromContext maps a context error (the caller's deadline or cancellation) to its code, or
// returns nil if err is not one. This is the one place where context errors become codes.
func fromContext(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded before Warden could decide")
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	}
	return nil
}
