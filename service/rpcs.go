package service

import (
	"context"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Each RPC answers UNIMPLEMENTED, naming what is missing, until its capability is wired in.

func (s *Server) Authenticate(ctx context.Context, req *wardenv1.AuthenticateRequest) (*wardenv1.AuthenticateResponse, error) {
	return nil, unimplemented("Authenticate: authentication (API keys, JWT, mTLS, OAuth2) is not built into this Warden yet")
}
