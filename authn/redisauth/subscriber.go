package redisauth

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Invalidator is the cache a Subscriber keeps fresh; *authn.APIKeys satisfies it. Both
// methods must be quick and safe for concurrent use.
type Invalidator interface {
	InvalidateKey(id string)
	FlushKeys()
}

// SubscriberConfig configures a Subscriber. Redis and Target are required.
type SubscriberConfig struct {
	// Redis names the client and channel; it must match the KeyStore's.
	Redis Config
	// Target is the cache to invalidate. Required.
	Target Invalidator
	// HealthInterval is how long the subscription may stay silent before it is pinged; a
	// failed ping counts as a lost connection. Default 10s.
	HealthInterval time.Duration
	// RetryDelay is the pause before resubscribing after an error. Default 200ms.
	RetryDelay time.Duration
	// Logger receives connection errors. Default slog.Default().
	Logger *slog.Logger
}

// Subscriber listens on the invalidation channel and drops changed keys from a local cache.
// Whenever its subscription is (re)established it flushes the whole cache, because messages
// sent while it was disconnected are lost. Build it with NewSubscriber and call Run once.
type Subscriber struct {
	cfg SubscriberConfig
}

// NewSubscriber returns a Subscriber.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if err := cfg.Redis.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Target == nil {
		return nil, errors.New("redisauth: SubscriberConfig.Target is required")
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 10 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Subscriber{cfg: cfg}, nil
}

// Run subscribes and applies invalidations until ctx is done, then returns nil. Connection
// errors are logged and retried; they never end Run.
func (s *Subscriber) Run(ctx context.Context) error {
	for {
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// The connection is lost: until it is back, invalidations may be missed.
		s.cfg.Target.FlushKeys()
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "api key invalidation subscription lost",
			slog.String("error", err.Error()))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.RetryDelay):
		}
	}
}

func (s *Subscriber) session(ctx context.Context) error {
	ps := s.cfg.Redis.Client.Subscribe(ctx, s.cfg.Redis.Channel)
	defer ps.Close()
	// A blocked read does not watch ctx: closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.cfg.HealthInterval)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				continue
			}
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.cfg.Target.FlushKeys()
			}
		case *redis.Message:
			s.cfg.Target.InvalidateKey(m.Payload)
		}
	}
}
