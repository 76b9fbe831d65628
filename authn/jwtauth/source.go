package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// source holds the current JWK Set of one issuer and fetches it again: periodically from
// run, and on demand (an unknown kid) at most once per cooldown. At most one fetch is in
// flight; concurrent callers share it. Safe for concurrent use.
type source struct {
	issuer   string
	url      string // exactly one of url and file is set
	file     string
	client   *http.Client
	maxBytes int64
	timeout  time.Duration
	interval time.Duration
	cooldown time.Duration
	allowed  alg
	// dropUnacceptable skips unacceptable keys instead of refusing the set.
	dropUnacceptable bool
	now              func() time.Time
	log              *slog.Logger

	// fetches and failures count fetch attempts and refused sets (unreachable, redirected,
	// too large, unparsable, unacceptable or empty).
	fetches, failures atomic.Uint64

	set atomic.Pointer[keySet]

	mu          sync.Mutex
	lastAttempt time.Time     // when the last fetch started (now())
	inflight    chan struct{} // closed when the fetch in flight ends; nil when none
	lastErr     error
}

// keys returns the current set, nil before the first successful fetch.
func (s *source) keys() *keySet { return s.set.Load() }

// refresh fetches now (or joins the fetch in flight) and returns its error. The last good set
// is kept when it fails.
func (s *source) refresh(ctx context.Context) error {
	s.mu.Lock()
	if ch := s.inflight; ch != nil {
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.lastErr
	}
	ch := s.startLocked()
	s.mu.Unlock()
	return s.fetch(ctx, ch)
}

// kick starts a fetch in the background unless one is in flight or one started less than
// cooldown ago. It returns a channel closed when that fetch (or the one in flight) ends, or
// nil when the cooldown forbids a fetch. The fetch is not bound to any request's context.
func (s *source) kick() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight
	}
	if !s.lastAttempt.IsZero() && s.now().Sub(s.lastAttempt) < s.cooldown {
		return nil
	}
	ch := s.startLocked()
	go func() {
		// The fetch outlives the request that asked for it; its own timeout bounds it.
		_ = s.fetch(context.Background(), ch)
	}()
	return ch
}

func (s *source) startLocked() chan struct{} {
	ch := make(chan struct{})
	s.inflight = ch
	s.lastAttempt = s.now()
	return ch
}

func (s *source) fetch(ctx context.Context, ch chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	s.fetches.Add(1)
	data, err := s.read(ctx)
	var ks *keySet
	if err == nil {
		ks, err = parseJWKS(data, s.allowed, s.dropUnacceptable)
		var je *JWKSError
		if errors.As(err, &je) {
			je.Issuer, je.Source = s.issuer, s.name()
		}
	}
	if err != nil {
		s.failures.Add(1)
		s.log.Warn("jwtauth: JWK Set refused, keeping the last good set",
			"issuer", s.issuer, "source", s.name(), "error", err)
	} else {
		ks.adopt(s.set.Load())
		s.set.Store(ks)
		s.log.Debug("jwtauth: JWKS loaded", "issuer", s.issuer, "keys", len(ks.all))
		for _, sk := range ks.skipped {
			level := slog.LevelInfo
			if ks.dropped > 0 {
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "jwtauth: JWKS key ignored", "issuer", s.issuer, "key", sk)
		}
	}
	s.mu.Lock()
	s.inflight = nil
	s.lastErr = err
	s.mu.Unlock()
	close(ch)
	return err
}

// name is the set's file or URL, for errors and logs.
func (s *source) name() string {
	if s.file != "" {
		return s.file
	}
	return s.url
}

// fresh reports whether the last fetch succeeded less than interval ago.
func (s *source) fresh() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight == nil && s.lastErr == nil && !s.lastAttempt.IsZero() &&
		s.now().Sub(s.lastAttempt) < s.interval && s.set.Load() != nil
}

func (s *source) read(ctx context.Context) ([]byte, error) {
	var r io.Reader
	if s.file != "" {
		f, err := os.Open(s.file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := s.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("JWKS %s: HTTP status %d", s.url, resp.StatusCode)
		}
		r = resp.Body
	}
	data, err := io.ReadAll(io.LimitReader(r, s.maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > s.maxBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", s.maxBytes)
	}
	return data, nil
}

// run fetches at once (unless Load just did) and then every interval until ctx ends; after a
// failure it tries again after the cooldown (or the interval, if shorter).
func (s *source) run(ctx context.Context) {
	var wait time.Duration
	if s.fresh() {
		wait = s.interval
	}
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		wait = s.interval
		if err := s.refresh(ctx); err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return
			}
			wait = min(s.cooldown, s.interval)
		}
	}
}

// redirectPolicy returns client with its CheckRedirect replaced by the issuer's policy:
// refuse every redirect, or with sameHost follow at most 3 to the same scheme and host (port
// included) as the JWKS URL. A redirect elsewhere would let whoever controls it choose the
// keys Warden trusts.
func redirectPolicy(client *http.Client, sameHost bool) *http.Client {
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		switch {
		case !sameHost:
			return fmt.Errorf("redirect to %s refused (JWKS redirects are not followed)", redactURL(req.URL))
		case len(via) >= 3:
			return errors.New("too many redirects")
		case req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host):
			return fmt.Errorf("redirect to %s refused (another host)", redactURL(req.URL))
		}
		return nil
	}
	return &c
}

// redactURL is u without user info, query or fragment, for logs.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}
