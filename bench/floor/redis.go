package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// gcraScript is GCRA on one string per key: the theoretical arrival time (TAT) in
// microseconds of Redis TIME, read with GET and written with SET … PX, expiring when the
// bucket is full again. ARGV: the emission interval and the burst tolerance, both in µs.
// It returns 1 when the call is allowed (and counted), 0 when over the limit.
const gcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + interval
if new - now > burst + interval then return 0 end
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000))
return 1
`

// redisRLS is an RLS whose every descriptor is one GCRA script call on Redis: the floors
// a Redis store is compared with.
type redisRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	rdb             *redis.Client
	sha             string
	interval, burst int64      // µs
	batch           chan *call // nil: one EVALSHA per descriptor
}

// call is one script call waiting for the batch sender.
type call struct {
	key  string
	res  int64
	err  error
	done chan struct{}
}

func newRedisRLS(addr, mode string, limit int64) (*redisRLS, error) {
	if limit <= 0 {
		return nil, errors.New("-limit must be positive")
	}
	r := &redisRLS{
		rdb:      redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64}),
		interval: int64(time.Second/time.Microsecond) / limit,
	}
	r.burst = r.interval * limit // a full second of calls
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sha, err := r.rdb.ScriptLoad(ctx, gcraScript).Result()
	if err != nil {
		return nil, fmt.Errorf("redis %s: SCRIPT LOAD: %w", addr, err)
	}
	r.sha = sha
	switch mode {
	case "evalsha":
	case "batch":
		r.batch = make(chan *call, 4096)
		go r.send()
	default:
		return nil, fmt.Errorf("-rls %q: want evalsha or batch", mode)
	}
	return r, nil
}

func (r *redisRLS) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(req.GetDescriptors()))}
	for i, d := range req.GetDescriptors() {
		var b strings.Builder
		b.WriteString(req.GetDomain())
		for _, e := range d.GetEntries() {
			b.WriteString("_" + e.GetKey() + "_" + e.GetValue())
		}
		ok, err := r.take(ctx, b.String())
		if err != nil {
			return nil, err
		}
		code := rlsv3.RateLimitResponse_OK
		if !ok {
			code, resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT, rlsv3.RateLimitResponse_OVER_LIMIT
		}
		resp.Statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: code}
	}
	return resp, nil
}

// redisAuthz is an ext_authz handler that counts each call with one script call on the
// request's path (one key per bench user) and allows it unless over the limit.
type redisAuthz struct {
	authv3.UnimplementedAuthorizationServer
	r *redisRLS
}

func (a redisAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ok, err := a.r.take(ctx, "authz_"+req.GetAttributes().GetRequest().GetHttp().GetPath())
	if err != nil {
		return nil, err
	}
	if !ok {
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.ResourceExhausted)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{}},
		}, nil
	}
	return allowAll{}.Check(ctx, req)
}

// take runs the script for key: its own EVALSHA, or a place in the next pipeline.
func (r *redisRLS) take(ctx context.Context, key string) (bool, error) {
	if r.batch == nil {
		n, err := r.rdb.EvalSha(ctx, r.sha, []string{key}, r.interval, r.burst).Int64()
		return n == 1, err
	}
	c := &call{key: key, done: make(chan struct{})}
	r.batch <- c
	select {
	case <-c.done:
		return c.res == 1, c.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// send is the batch sender: it takes every call queued, sends them as one pipeline, and
// starts again; a lone call goes at once (no timer), so batching costs no latency at low load.
func (r *redisRLS) send() {
	const maxBatch = 256
	calls := make([]*call, 0, maxBatch)
	cmds := make([]*redis.Cmd, 0, maxBatch)
	for c := range r.batch {
		calls = append(calls[:0], c)
	drain:
		for len(calls) < maxBatch {
			select {
			case c := <-r.batch:
				calls = append(calls, c)
			default:
				break drain
			}
		}
		p := r.rdb.Pipeline()
		cmds = cmds[:0]
		for _, c := range calls {
			cmds = append(cmds, p.EvalSha(context.Background(), r.sha, []string{c.key}, r.interval, r.burst))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = p.Exec(ctx)
		cancel()
		for i, c := range calls {
			c.res, c.err = cmds[i].Int64()
			close(c.done)
		}
	}
}
