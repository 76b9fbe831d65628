package service

import (
	"context"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// authenticate turns credentials into a principal. A nil denied and nil error means
// authenticated; a non-nil denied is the answer to send; an error means Warden could not
// decide.
func (s *Server) authenticate(ctx context.Context, d *Deps, c *wardenv1.Credentials) (authn.Principal, *wardenv1.AuthenticateResponse, error) {
	return authn.Principal{}, nil, unimplemented("authentication (API keys, JWT, mTLS, OAuth2) is not built into this Warden yet")
}
