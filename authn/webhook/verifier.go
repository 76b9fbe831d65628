package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wardenhq/warden/internal/budget"
)

// Config configures a Verifier. Its yaml tags are the schema of Warden's webhooks section; the
// injected dependencies are not read from YAML.
type Config struct {
	// Sources are the configured senders; names must be unique.
	Sources []Source `yaml:"sources"`
	// Replay records verified events of sources with Replay on. Required when any source
	// has Replay on; a MemoryReplay serves a single replica, authn/webhook/redisreplay
	// several.
	Replay ReplayStore `yaml:"-"`
	// ReplayGuard, if set, bounds each replay store call by a budget (the caller's deadline
	// less a margin for answering, at most the guard's cap) and breaks the circuit when the
	// store fails or hangs; a call that cannot complete is Unavailable (the delivery is
	// refused, never accepted unchecked). Set it for a store across the network (cmd/warden
	// does for Redis); nil calls the store directly, bounded only by ctx.
	ReplayGuard *budget.Guard `yaml:"-"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `yaml:"-"`
	// Logger receives replay store failures (source and reason, never a secret, header or
	// body). Default: discard.
	Logger *slog.Logger `yaml:"-"`
}

// Verifier verifies deliveries for a fixed set of sources. Build it with New; the zero value
// is not usable. It is immutable after New and safe for concurrent use; to apply a new
// configuration, build a new Verifier and swap it in (e.g. with an atomic.Pointer).
type Verifier struct {
	sources map[string]*source
	replay  ReplayStore
	guard   *budget.Guard
	now     func() time.Time
	log     *slog.Logger
}

// New validates cfg and returns a Verifier. Every invalid source field is reported, each as a
// *fielderr.Error joined with errors.Join.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{sources: make(map[string]*source, len(cfg.Sources)), replay: cfg.Replay, guard: cfg.ReplayGuard, now: cfg.Now, log: cfg.Logger}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for i, src := range cfg.Sources {
		s, err := compile(i, src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := v.sources[s.name]; dup {
			errs = append(errs, sourceError(fmt.Sprintf("sources[%d].name", i), s.name, "duplicate source name"))
			continue
		}
		if s.replay && v.replay == nil {
			errs = append(errs, sourceError(fmt.Sprintf("sources[%d].replay", i), s.name, "replay protection needs a replay store"))
		}
		v.sources[s.name] = s
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return v, nil
}

// Verify checks one delivery of the named source: body size, headers, signature (any active
// secret), timestamp tolerance, then replay. headers may be nil (every header is then
// missing). body must be the raw bytes as received.
//
// It returns a value: a Result is small and the common path allocates nothing for it.
func (v *Verifier) Verify(ctx context.Context, sourceName string, headers Headers, body []byte) Result {
	s, ok := v.sources[sourceName]
	if !ok {
		return Result{Reason: UnknownSource}
	}
	if len(body) > s.maxPayload {
		return Result{Reason: TooLarge}
	}
	if headers == nil {
		headers = Map(nil)
	}
	var d delivery
	if r := s.parse(headers, &d); r != OK {
		return Result{Reason: r}
	}

	// The MAC under the first secret is always computed: it is the replay key of schemes
	// whose id is not signed, and it must not depend on which secret happened to match.
	var first, sum [sha256.Size]byte
	matched := false
	for i, k := range s.keys {
		if i == 0 {
			s.mac(k, &d, body, &first)
			sum = first
		} else {
			s.mac(k, &d, body, &sum)
		}
		for j := 0; j < d.n; j++ {
			if hmac.Equal(sum[:], d.sigs[j][:]) {
				matched = true
			}
		}
		if matched {
			break
		}
	}
	if !matched {
		return Result{Reason: NoMatchingSignature}
	}

	res := Result{EventID: d.id}
	if d.ts != "" {
		res.Timestamp = time.Unix(d.unix, 0)
		age := v.now().Sub(res.Timestamp)
		switch {
		case age > s.tolerance:
			res.Reason = Stale
			return res
		case -age > s.tolerance:
			res.Reason = Future
			return res
		}
	}
	if s.scheme == Stripe && s.replay {
		res.EventID, _ = topLevelID(body)
	}
	if !s.replay {
		res.Valid = true
		return res
	}

	replayKey := res.EventID
	if !s.idSigned || replayKey == "" {
		replayKey = "sig:" + hex.EncodeToString(first[:16])
	}
	firstSeen, err := v.seen(ctx, s, replayKey)
	if err != nil {
		if err == budget.ErrOpen { // logged once, when it opened
			res.Reason = Unavailable
			return res
		}
		v.log.LogAttrs(ctx, slog.LevelWarn, "webhook replay store failed", slog.String("source", s.name), slog.String("error", err.Error()))
		res.Reason = Unavailable
		return res
	}
	if !firstSeen {
		res.Reason, res.Duplicate = Duplicate, true
		return res
	}
	res.Valid, res.FirstSeen = true, true
	return res
}

// seen asks the replay store, under the guard when there is one.
func (v *Verifier) seen(ctx context.Context, s *source, key string) (bool, error) {
	if v.guard == nil {
		return v.replay.Seen(ctx, s.name, key, s.replayTTL)
	}
	var first bool
	if err := v.guard.Do(ctx, func(ctx context.Context) error {
		var err error
		first, err = v.replay.Seen(ctx, s.name, key, s.replayTTL)
		return err
	}); err != nil {
		return false, err // first may still be written by an abandoned call
	}
	return first, nil
}
