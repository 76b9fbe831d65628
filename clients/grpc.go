package clients

import (
	"context"
	"encoding/pem"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// UnaryServerInterceptor returns an interceptor that asks Warden about every unary call before its
// handler runs, with one Check (or, with an AuthnCache, from a cached decision with at most one
// CheckRateLimit).
//
// It forwards the credential metadata (WithCredentialHeaders: authorization and x-api-key by
// default) and the client's TLS certificate (PEM, leaf only) as credentials, and the call as an
// HTTP request {method: "POST", path: full method, host: :authority, headers: the text metadata}
// plus grpc_method, so that Warden's route table matches `POST /pkg.Service/Method`;
// WithRequestActions maps methods (and their request messages) to explicit actions instead. On
// allow the handler's context carries the principal (PrincipalFrom) and the incoming metadata
// carries Warden's upstream headers (replacing any the client sent under the same names) without
// the ones Warden removes; the client's own identity headers (every x-warden-* name, or those
// WithIdentityHeaders reserves) never reach the handler, whatever the outcome (allowed, cached,
// failed open, skipped). Warden's response headers (WWW-Authenticate, the rate-limit headers
// WithRateLimitHeaders lets through) become header metadata, allowed or not. A denial returns the
// status CheckError describes; a Warden that cannot decide returns UNAVAILABLE (fail closed, the
// default) or lets the call through without a principal, marked FailedOpenFrom
// (WithAuthFailurePolicy(FailOpen)). Methods in the skip list (WithSkip; health and reflection by
// default) are not checked.
func UnaryServerInterceptor(c *Client, opts ...HandlerOption) grpc.UnaryServerInterceptor {
	g := newGuard(c, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if g.cfg.skipped(info.FullMethod) {
			return handler(contextWithoutIdentity(ctx, &g.cfg.identity), req)
		}
		ctx, err := g.grpc(ctx, info.FullMethod, req, func(md metadata.MD) error { return grpc.SetHeader(ctx, md) })
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls: Warden is asked once,
// when the stream opens.
func StreamServerInterceptor(c *Client, opts ...HandlerOption) grpc.StreamServerInterceptor {
	g := newGuard(c, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if g.cfg.skipped(info.FullMethod) {
			if ctx := contextWithoutIdentity(ss.Context(), &g.cfg.identity); ctx != ss.Context() {
				ss = &serverStream{ServerStream: ss, ctx: ctx}
			}
			return handler(srv, ss)
		}
		ctx, err := g.grpc(ss.Context(), info.FullMethod, nil, ss.SetHeader)
		if err != nil {
			return err
		}
		return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
	}
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

// grpc decides on one call and returns the handler's context, or the status error to return.
func (g *guard) grpc(ctx context.Context, method string, msg any, setHeader func(metadata.MD) error) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx) // a copy: the guard may change it
	r := &request{
		grpcMethod: method,
		md:         md,
		msg:        msg,
		creds:      &wardenv1.Credentials{Headers: credentialHeaders(&g.cfg, md, false), PeerCertificate: peerCertificate(ctx)},
	}
	o, err := g.decide(ctx, r)
	if err != nil {
		return ctx, err
	}
	if n := len(o.responseHeaders); n > 0 {
		out := make(metadata.MD, n)
		vals := make([]string, 0, n)
		for _, h := range o.responseHeaders {
			if !g.cfg.rateLimitHeaders.passes(h.GetName()) {
				continue
			}
			i := len(vals)
			vals = append(vals, h.GetValue())
			k := lowerName(h.GetName())
			if v, ok := out[k]; ok {
				out[k] = append(v, vals[i])
			} else {
				out[k] = vals[i : i+1 : i+1]
			}
		}
		if len(out) > 0 {
			_ = setHeader(out) // fails only if headers were already sent: nothing to do then
		}
	}
	if !o.allowed {
		return ctx, o.denied
	}
	if len(o.upstreamHeaders) > 0 || len(o.remove) > 0 || hasIdentity(md, &g.cfg.identity) {
		if md == nil {
			md = metadata.MD{}
		}
		for _, n := range o.remove {
			delete(md, lowerName(n))
		}
		deleteIdentity(md, &g.cfg.identity)
		vals := make([]string, len(o.upstreamHeaders)) // one allocation for every value
		for i, h := range o.upstreamHeaders {
			vals[i] = h.GetValue()
			md[lowerName(h.GetName())] = vals[i : i+1 : i+1]
		}
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	return handlerContext(ctx, &o), nil
}

// peerCertificate is the client's TLS leaf certificate as PEM, or "".
func peerCertificate(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ti.State.PeerCertificates[0].Raw}))
}

// textMetadata is md without pseudo-headers and binary values, repeated values joined with ",".
func textMetadata(md metadata.MD) map[string]string {
	if len(md) == 0 {
		return nil
	}
	m := make(map[string]string, len(md))
	for k, v := range md {
		if strings.HasPrefix(k, ":") || strings.HasSuffix(k, "-bin") || len(v) == 0 {
			continue
		}
		m[k] = strings.Join(v, ",")
	}
	return m
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
