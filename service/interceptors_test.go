package service_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/service"
)

func TestRecoverUnaryTurnsAPanicIntoInternal(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	intercept := service.RecoverUnary(log)
	info := &grpc.UnaryServerInfo{FullMethod: "/warden.v1.WardenService/Check"}
	resp, err := intercept(context.Background(), nil, info, func(ctx context.Context, req any) (any, error) {
		panic("secret-detail")
	})
	if resp != nil || status.Code(err) != codes.Internal {
		t.Fatalf("got %v, %v; want INTERNAL", resp, err)
	}
	if msg := status.Convert(err).Message(); strings.Contains(msg, "secret-detail") {
		t.Errorf("the panic's text reached the caller: %q", msg)
	}
	if !strings.Contains(logs.String(), "secret-detail") || !strings.Contains(logs.String(), "Check") {
		t.Errorf("the panic is not in the log with its method:\n%s", logs.String())
	}
	// A handler that does not panic is untouched.
	resp, err = intercept(context.Background(), nil, info, func(ctx context.Context, req any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Errorf("no panic: got %v, %v", resp, err)
	}
}
