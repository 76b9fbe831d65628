package service

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wardenhq/warden/authn/webhook"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// VerifyWebhook verifies a webhook delivery: signature over the raw body, timestamp
// tolerance, and replay protection by event id. A replay store that cannot answer makes the
// call fail with UNAVAILABLE: a delivery is never accepted unchecked.
func (s *Server) VerifyWebhook(ctx context.Context, req *wardenv1.VerifyWebhookRequest) (*wardenv1.VerifyWebhookResponse, error) {
	v := s.deps.Load().Webhooks
	if v == nil {
		return nil, unimplemented("VerifyWebhook: no webhook sources are configured (config section webhooks.sources)")
	}
	if req.GetSource() == "" {
		return nil, invalidArgument("source", "required: the name of a configured webhook source")
	}
	if err := s.headers.check("headers", req.GetHeaders()); err != nil {
		return nil, err
	}
	r := v.Verify(ctx, req.GetSource(), webhook.Map(req.GetHeaders()), req.GetBody())
	if r.Reason == webhook.Unavailable {
		if err := fromContext(ctx, ctx.Err()); err != nil {
			return nil, err
		}
		return nil, unavailable("the webhook replay store")
	}
	resp := &wardenv1.VerifyWebhookResponse{
		Valid:     r.Valid,
		Reason:    webhookReason(r.Reason),
		EventId:   r.EventID,
		Duplicate: r.Duplicate,
	}
	if !r.Timestamp.IsZero() {
		resp.Timestamp = timestamppb.New(r.Timestamp)
	}
	if !r.Valid {
		s.audit.LogAttrs(ctx, slog.LevelInfo, "webhook denied",
			slog.String("rpc", "VerifyWebhook"), slog.String("source", req.GetSource()),
			slog.String("reason", r.Reason.String()), slog.String("event_id", r.EventID))
	}
	return resp, nil
}

func webhookReason(r webhook.Reason) wardenv1.DenyReason {
	switch r {
	case webhook.OK:
		return wardenv1.DenyReason_DENY_REASON_UNSPECIFIED
	case webhook.MissingHeader:
		return wardenv1.DenyReason_DENY_REASON_MISSING_HEADER
	case webhook.BadFormat:
		return wardenv1.DenyReason_DENY_REASON_BAD_FORMAT
	case webhook.Stale:
		return wardenv1.DenyReason_DENY_REASON_STALE_TIMESTAMP
	case webhook.Future:
		return wardenv1.DenyReason_DENY_REASON_FUTURE_TIMESTAMP
	case webhook.NoMatchingSignature:
		return wardenv1.DenyReason_DENY_REASON_NO_MATCHING_SIGNATURE
	case webhook.Duplicate:
		return wardenv1.DenyReason_DENY_REASON_DUPLICATE
	case webhook.TooLarge:
		return wardenv1.DenyReason_DENY_REASON_PAYLOAD_TOO_LARGE
	case webhook.UnknownSource:
		return wardenv1.DenyReason_DENY_REASON_UNKNOWN_SOURCE
	}
	return wardenv1.DenyReason_DENY_REASON_BAD_FORMAT
}
