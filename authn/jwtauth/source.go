package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
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
	now      func() time.Time
	log      *slog.Logger

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
	data, err := s.read(ctx)
	var ks *keySet
	if err == nil {
		ks, err = parseJWKS(data, s.allowed)
	}
	if err != nil {
		s.log.Warn("jwtauth: JWKS fetch failed, keeping the last good set",
			"issuer", s.issuer, "error", err)
	} else {
		s.set.Store(ks)
		s.log.Debug("jwtauth: JWKS loaded", "issuer", s.issuer, "keys", len(ks.all))
		for _, sk := range ks.skipped {
			s.log.Info("jwtauth: JWKS key ignored", "issuer", s.issuer, "key", sk)
		}
	}
	s.mu.Lock()
	s.inflight = nil
	s.lastErr = err
	s.mu.Unlock()
	close(ch)
	return err
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

// run fetches at once and then every interval until ctx ends; after a failure it tries again
// after the cooldown (or the interval, if shorter).
func (s *source) run(ctx context.Context) {
	for {
		wait := s.interval
		if err := s.refresh(ctx); err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return
			}
			wait = min(s.cooldown, s.interval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func httpClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" && (req.URL.Scheme != "http" || via[0].URL.Scheme == "https") {
				return fmt.Errorf("redirect to scheme %q refused", req.URL.Scheme)
			}
			return nil
		},
	}
}
