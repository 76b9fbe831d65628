package authn

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/wardenhq/warden/internal/testutil"
)

const (
	testID     = "AbCdEf012345"
	testSecret = "0123456789abcdefghijKL"
)

func testPepper(t testing.TB) *Pepper {
	t.Helper()
	p, err := NewPepper(bytes.Repeat([]byte("pepper!"), 6))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseAPIKey(t *testing.T) {
	live := formatAPIKey(livePrefix, testID, testSecret)
	test := formatAPIKey(testPrefix, testID, testSecret)
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name string
		key  string
		want ParsedAPIKey
		ok   bool
	}{
		{"live", live, ParsedAPIKey{EnvLive, testID, testSecret}, true},
		{"test", test, ParsedAPIKey{EnvTest, testID, testSecret}, true},
		{"empty", "", ParsedAPIKey{}, false},
		{"short", live[:APIKeyLen-1], ParsedAPIKey{}, false},
		{"long", live + "0", ParsedAPIKey{}, false},
		{"other prefix", "sk-prod-" + live[8:], ParsedAPIKey{}, false},
		{"upper prefix", "SK-LIVE-" + live[8:], ParsedAPIKey{}, false},
		{"no separator", live[:20] + "-" + live[21:], ParsedAPIKey{}, false},
		{"typo in id", flip(live, 10), ParsedAPIKey{}, false},
		{"typo in secret", flip(live, 30), ParsedAPIKey{}, false},
		{"typo in checksum", flip(live, APIKeyLen-1), ParsedAPIKey{}, false},
		{"prefix swapped, checksum not", testPrefix + live[8:], ParsedAPIKey{}, false},
		{"non-base62", live[:30] + "+" + live[31:], ParsedAPIKey{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAPIKey(tt.key)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseAPIKey(%q) error = %v, want ok=%v", tt.key, err, tt.ok)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("ParseAPIKey(%q) (-got +want):\n%s", tt.key, diff)
			}
		})
	}
}

func TestNewAPIKey(t *testing.T) {
	seen := map[string]bool{}
	for _, env := range []Environment{EnvLive, EnvTest} {
		for i := 0; i < 100; i++ {
			key, pk, err := NewAPIKey(env)
			if err != nil {
				t.Fatal(err)
			}
			if len(key) != APIKeyLen || pk.Env != env || !strings.HasPrefix(key, map[Environment]string{EnvLive: livePrefix, EnvTest: testPrefix}[env]) {
				t.Fatalf("NewAPIKey(%v) = %q, %+v", env, key, pk)
			}
			if seen[pk.ID] || seen[pk.Secret] {
				t.Fatalf("NewAPIKey repeated an id or secret")
			}
			seen[pk.ID], seen[pk.Secret] = true, true
		}
	}
	if _, _, err := NewAPIKey(EnvUnspecified); err == nil {
		t.Errorf("NewAPIKey(EnvUnspecified) error = nil, want an error")
	}
}

func TestParseAPIKeyAllocs(t *testing.T) {
	key := formatAPIKey(livePrefix, testID, testSecret)
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseAPIKey(key) }); n != 0 {
		t.Errorf("ParseAPIKey allocs = %v, want 0", n)
	}
}

func TestPepperDigestIsHMAC(t *testing.T) {
	for _, plen := range []int{32, 64, 65, 200} {
		secret := make([]byte, plen)
		_, _ = rand.Read(secret)
		p, err := NewPepper(secret)
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range []string{"", "x", testSecret, strings.Repeat("z", 64)} {
			m := hmac.New(sha256.New, secret)
			m.Write([]byte(msg))
			want := m.Sum(nil)
			got := p.Digest(msg)
			if !bytes.Equal(got[:], want) {
				t.Errorf("pepper %d bytes, Digest(%q) = %x, want %x", plen, msg, got, want)
			}
		}
	}
	if _, err := NewPepper(make([]byte, 31)); err == nil {
		t.Errorf("NewPepper(31 bytes) error = nil, want an error")
	}
}

func FuzzParseAPIKey(f *testing.F) {
	f.Add(formatAPIKey(livePrefix, testID, testSecret))
	f.Add(formatAPIKey(testPrefix, testID, testSecret))
	f.Add("sk-live-")
	f.Add("")
	f.Fuzz(func(t *testing.T, key string) {
		pk, err := ParseAPIKey(key)
		if err != nil {
			return
		}
		prefix := livePrefix
		if pk.Env == EnvTest {
			prefix = testPrefix
		}
		if got := formatAPIKey(prefix, pk.ID, pk.Secret); got != key {
			t.Fatalf("re-formatted key = %q, want %q", got, key)
		}
		if !ValidAPIKeyID(pk.ID) {
			t.Fatalf("ValidAPIKeyID(%q) = false for a parsed key", pk.ID)
		}
	})
}

// clock is a test clock that the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestAPIKeys(t testing.TB, store KeyStore, c *clock) *APIKeys {
	t.Helper()
	a, err := NewAPIKeys(APIKeysConfig{Store: store, Pepper: testPepper(t), Env: EnvLive, Now: c.now,
		CacheTTL: time.Minute, NegativeTTL: 5 * time.Second, RotationGrace: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAPIKeysAuthenticate(t *testing.T) {
	ctx := context.Background()
	c := &clock{t0}
	store := &MemoryKeyStore{}
	a := newTestAPIKeys(t, store, c)
	pepper := testPepper(t)
	put := func(id string, mod func(*KeyRecord)) string {
		secret := strings.Repeat("s", 10) + id
		rec := KeyRecord{ID: id, Env: EnvLive, Digest: pepper.Digest(secret), Owner: "user-" + id,
			Tenant: "acme", Roles: []string{"reader"}, Tier: "paid", CreatedAt: t0.Add(-time.Hour)}
		if mod != nil {
			mod(&rec)
		}
		if err := store.Put(ctx, rec); err != nil {
			t.Fatal(err)
		}
		return formatAPIKey(livePrefix, id, secret)
	}
	good := put("good00000001", nil)
	expired := put("expired00001", func(r *KeyRecord) { r.ExpiresAt = t0 })
	revoked := put("revoked00001", func(r *KeyRecord) { r.RevokedAt = t0.Add(-time.Second) })
	graced := put("graced000001", func(r *KeyRecord) { r.RevokedAt = t0.Add(time.Minute) })
	testRec := put("testenv00001", func(r *KeyRecord) { r.Env = EnvTest })
	wrongSecret := formatAPIKey(livePrefix, "good00000001", strings.Repeat("x", 22))
	unknown := formatAPIKey(livePrefix, "nobody000001", strings.Repeat("x", 22))
	testKey := formatAPIKey(testPrefix, "good00000001", strings.Repeat("s", 10)+"good00000001")

	tests := []struct {
		name        string
		key         string
		want        Reason
		wantLookups uint64
	}{
		{"good", good, OK, 1},
		{"good again, cached", good, OK, 0},
		{"malformed", good[:48] + "!", Malformed, 0},
		{"typo", good[:30] + "Q" + good[31:], Malformed, 0},
		{"test key on live deployment", testKey, Malformed, 0},
		{"unknown", unknown, Unknown, 1},
		{"unknown again, negative cache", unknown, Unknown, 0},
		{"wrong secret", wrongSecret, BadSignature, 0},
		{"expired", expired, Expired, 1},
		{"revoked", revoked, Revoked, 1},
		{"rotated, in grace", graced, OK, 1},
		{"record of another environment", testRec, Unknown, 1},
	}
	for _, tt := range tests {
		before := a.Stats()
		p, got := a.Authenticate(ctx, tt.key)
		if got != tt.want {
			t.Errorf("%s: reason = %v, want %v", tt.name, got, tt.want)
		}
		after := a.Stats()
		if n := after.Lookups - before.Lookups; n != tt.wantLookups {
			t.Errorf("%s: store lookups = %d, want %d", tt.name, n, tt.wantLookups)
		}
		// Every key that parses is a cache hit or a miss (a lookup); a malformed one neither.
		wantHits := 1 - tt.wantLookups
		if tt.want == Malformed {
			wantHits = 0
		}
		if h, m := after.CacheHits-before.CacheHits, after.CacheMisses-before.CacheMisses; h != wantHits || m != tt.wantLookups {
			t.Errorf("%s: cache hits, misses = %d, %d, want %d, %d", tt.name, h, m, wantHits, tt.wantLookups)
		}
		if got != OK && !cmp.Equal(p, Principal{}) {
			t.Errorf("%s: principal = %+v on failure, want the zero value", tt.name, p)
		}
	}

	p, _ := a.Authenticate(ctx, good)
	want := Principal{Subject: "user-good00000001", Tenant: "acme", Roles: []string{"reader"},
		Method: MethodAPIKey, CredentialID: "good00000001", Env: EnvLive, Tier: "paid"}
	if diff := cmp.Diff(p, want); diff != "" {
		t.Errorf("principal (-got +want):\n%s", diff)
	}
	p, _ = a.Authenticate(ctx, graced)
	if got, want := p.ExpiresAt, t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("graced key ExpiresAt = %v, want %v (end of grace)", got, want)
	}
	c.t = t0.Add(time.Minute)
	if _, got := a.Authenticate(ctx, graced); got != Revoked {
		t.Errorf("graced key after grace: reason = %v, want %v", got, Revoked)
	}
}

func TestAPIKeysLifecycle(t *testing.T) {
	ctx := context.Background()
	c := &clock{t0}
	store := &MemoryKeyStore{}
	a := newTestAPIKeys(t, store, c)

	key, rec, err := a.Create(ctx, KeySpec{Owner: "alice", Tenant: "acme", Scopes: []string{"orders:read"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, r := a.Authenticate(ctx, key); r != OK || p.Subject != "alice" {
		t.Fatalf("new key: %v %+v, want OK for alice", r, p)
	}
	stored, _ := store.Key(ctx, rec.ID)
	if diff := cmp.Diff(stored, rec, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("stored record (-got +want):\n%s", diff)
	}
	if bytes.Contains([]byte(strings.Join([]string{stored.ID, stored.Owner}, "")), []byte(key[21:43])) {
		t.Errorf("stored record holds the secret")
	}

	newKey, newRec, err := a.Rotate(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if newRec.RotatedFrom != rec.ID || newRec.Owner != "alice" || newRec.ID == rec.ID {
		t.Errorf("rotated record = %+v, want same owner, new id, RotatedFrom %s", newRec, rec.ID)
	}
	for _, k := range []string{key, newKey} {
		if _, r := a.Authenticate(ctx, k); r != OK {
			t.Errorf("during grace: reason = %v, want OK", r)
		}
	}
	c.t = t0.Add(time.Hour)
	if _, r := a.Authenticate(ctx, key); r != Revoked {
		t.Errorf("old key after grace: reason = %v, want %v", r, Revoked)
	}
	if _, r := a.Authenticate(ctx, newKey); r != OK {
		t.Errorf("new key after grace: reason = %v, want OK", r)
	}
	if err := a.Revoke(ctx, newRec.ID); err != nil {
		t.Fatal(err)
	}
	if _, r := a.Authenticate(ctx, newKey); r != Revoked {
		t.Errorf("revoked key: reason = %v, want %v", r, Revoked)
	}
	if err := a.Revoke(ctx, "nobody000001"); err == nil {
		t.Errorf("Revoke(unknown) error = nil, want an error")
	}
	list, err := store.List(ctx, KeyFilter{Owner: "alice"})
	if err != nil || len(list) != 2 {
		t.Errorf("List(owner alice) = %d records, %v; want 2", len(list), err)
	}
}

func TestAPIKeysCreateClearsNegativeCache(t *testing.T) {
	ctx := context.Background()
	c := &clock{t0}
	store := &MemoryKeyStore{}
	a := newTestAPIKeys(t, store, c)
	// Another replica creates the key after this one cached its id as unknown; the
	// invalidation (here called by hand, by redisauth in production) makes it visible.
	key, pk, _ := NewAPIKey(EnvLive)
	if _, r := a.Authenticate(ctx, key); r != Unknown {
		t.Fatalf("before creation: %v, want %v", r, Unknown)
	}
	_ = store.Put(ctx, KeyRecord{ID: pk.ID, Env: EnvLive, Digest: testPepper(t).Digest(pk.Secret), Owner: "bob"})
	if _, r := a.Authenticate(ctx, key); r != Unknown {
		t.Fatalf("negative entry not used: %v, want %v", r, Unknown)
	}
	a.InvalidateKey(pk.ID)
	if _, r := a.Authenticate(ctx, key); r != OK {
		t.Errorf("after invalidation: %v, want OK", r)
	}
}

// TestAPIKeysLastUsed runs in a synctest bubble: synctest.Wait returns once Run has written
// the queued update and waits for more, so the test needs no polling.
func TestAPIKeysLastUsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := &clock{t0}
		store := &MemoryKeyStore{}
		a := newTestAPIKeys(t, store, c)
		key, rec, _ := a.Create(ctx, KeySpec{Owner: "alice"})
		for range 3 {
			a.Authenticate(ctx, key)
		}
		if got, want := len(a.touchC), 1; got != want {
			t.Fatalf("queued last-used updates = %d, want %d", got, want)
		}
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		synctest.Wait()
		if got := len(a.touchC); got != 0 {
			t.Fatalf("queued last-used updates once Run waits = %d, want 0", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		got, _ := store.Key(context.Background(), rec.ID)
		if !got.LastUsedAt.Equal(t0) {
			t.Errorf("LastUsedAt = %v, want %v", got.LastUsedAt, t0)
		}
	})
}

func TestAPIKeysCachedAllocs(t *testing.T) {
	ctx := context.Background()
	a := newTestAPIKeys(t, &MemoryKeyStore{}, &clock{t0})
	key, _, _ := a.Create(ctx, KeySpec{Owner: "alice"})
	wantCachedZeroAllocs(t, a, key)
}

// wantCachedZeroAllocs checks that authenticating with key, once cached, allocates nothing.
func wantCachedZeroAllocs(t *testing.T, a *APIKeys, key string) {
	t.Helper()
	ctx := context.Background()
	a.Authenticate(ctx, key)
	n := testing.AllocsPerRun(1000, func() {
		if _, r := a.Authenticate(ctx, key); r != OK {
			t.Fatal(r)
		}
	})
	if n != 0 {
		t.Errorf("Authenticate on a cached key allocs = %v, want 0", n)
	}
}

func BenchmarkAPIKeysAuthenticate(b *testing.B) {
	ctx := context.Background()
	a := newTestAPIKeys(b, &MemoryKeyStore{}, &clock{t0})
	key, _, _ := a.Create(ctx, KeySpec{Owner: "alice"})
	a.Authenticate(ctx, key)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, r := a.Authenticate(ctx, key); r != OK {
				b.Fatal(r)
			}
		}
	})
}

func BenchmarkParseAPIKey(b *testing.B) {
	key := formatAPIKey(livePrefix, testID, testSecret)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAPIKey(key); err != nil {
			b.Fatal(err)
		}
	}
}

// gatedStore is a MemoryKeyStore whose first Key call reads the record, then waits for
// release: a lookup caught in flight.
type gatedStore struct {
	MemoryKeyStore
	calls   atomic.Int32
	release chan struct{}
}

func (g *gatedStore) Key(ctx context.Context, id string) (KeyRecord, error) {
	rec, err := g.MemoryKeyStore.Key(ctx, id)
	if g.calls.Add(1) == 1 {
		<-g.release
	}
	return rec, err
}

func putTestKey(t *testing.T, store KeyStore, id string) string {
	t.Helper()
	secret := strings.Repeat("s", 10) + id
	rec := KeyRecord{ID: id, Env: EnvLive, Digest: testPepper(t).Digest(secret), Owner: "user-" + id, CreatedAt: t0}
	if err := store.Put(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return formatAPIKey(livePrefix, id, secret)
}

// TestAPIKeysConcurrentMissesShareALookup runs in a synctest bubble: once synctest.Wait
// returns, every caller has either reached the store or joined the held lookup, so "only one
// lookup in flight" is checked exactly rather than by polling for a while.
func TestAPIKeysConcurrentMissesShareALookup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &gatedStore{release: make(chan struct{})}
		a := newTestAPIKeys(t, store, &clock{t0})
		key := putTestKey(t, store, "burst0000001")
		const n = 50
		var wg sync.WaitGroup
		reasons := make(chan Reason, n)
		for range n {
			wg.Go(func() {
				_, r := a.Authenticate(context.Background(), key)
				reasons <- r
			})
		}
		// Without sharing, every caller would reach the store while the first lookup is held.
		synctest.Wait()
		if got := store.calls.Load(); got != 1 {
			t.Errorf("%d store lookups in flight for one key, want 1", got)
		}
		close(store.release)
		wg.Wait()
		close(reasons)
		for r := range reasons {
			if r != OK {
				t.Fatalf("reason %v, want OK", r)
			}
		}
		if got := a.Stats().Lookups; got != 1 {
			t.Errorf("store lookups = %d, want 1", got)
		}
	})
}

// holdFirstLookup authenticates key in the background until its lookup is held in store,
// and returns the channel its reason will come on once store.release is closed.
func holdFirstLookup(t *testing.T, ctx context.Context, a *APIKeys, store *gatedStore, key string) <-chan Reason {
	t.Helper()
	first := make(chan Reason, 1)
	go func() {
		_, r := a.Authenticate(ctx, key)
		first <- r
	}()
	if !testutil.Poll(5*time.Second, func() bool { return store.calls.Load() == 1 }) {
		t.Fatal("the first lookup never reached the store")
	}
	return first
}

// A miss after a revocation does not join a lookup that read the record before it.
func TestAPIKeysMissAfterInvalidationLooksUpAgain(t *testing.T) {
	ctx := context.Background()
	store := &gatedStore{release: make(chan struct{})}
	c := &clock{t0}
	a := newTestAPIKeys(t, store, c)
	key := putTestKey(t, store, "revoke000001")
	first := holdFirstLookup(t, ctx, a, store, key)
	if err := store.Revoke(ctx, "revoke000001", t0.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	a.InvalidateKey("revoke000001")
	// Bounded: joining the held lookup would wait for it (and answer Unavailable here).
	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, r := a.Authenticate(bctx, key); r != Revoked {
		t.Errorf("after the revocation: reason %v, want %v", r, Revoked)
	}
	close(store.release)
	if r := <-first; r != OK { // it read the record before the revocation
		t.Errorf("the lookup in flight: reason %v, want OK", r)
	}
	if _, r := a.Authenticate(ctx, key); r != Revoked {
		t.Errorf("afterwards: reason %v, want %v (the stale lookup must not fill the cache)", r, Revoked)
	}
}

// The caller that started a shared lookup and then gave up does not fail the others.
func TestAPIKeysSharedLookupOutlivesItsFirstCaller(t *testing.T) {
	store := &gatedStore{release: make(chan struct{})}
	a := newTestAPIKeys(t, store, &clock{t0})
	key := putTestKey(t, store, "cancel000001")
	ctx, cancel := context.WithCancel(context.Background())
	first := holdFirstLookup(t, ctx, a, store, key)
	second := make(chan Reason, 1)
	go func() {
		_, r := a.Authenticate(context.Background(), key)
		second <- r
	}()
	cancel()
	if r := <-first; r != Unavailable {
		t.Errorf("cancelled caller: reason %v, want %v", r, Unavailable)
	}
	close(store.release)
	if r := <-second; r != OK {
		t.Errorf("other caller: reason %v, want OK", r)
	}
	if got := a.Stats().Lookups; got != 1 {
		t.Errorf("store lookups = %d, want 1", got)
	}
}

// hangStore is a MemoryKeyStore whose Key hangs, ignoring its context, until released.
type hangStore struct {
	MemoryKeyStore
	calls   atomic.Int32
	release chan struct{}
}

func (h *hangStore) Key(ctx context.Context, id string) (KeyRecord, error) {
	h.calls.Add(1)
	<-h.release
	return h.MemoryKeyStore.Key(ctx, id)
}

// TestAPIKeysStoreHang: with a store that hangs (and ignores its context), a miss is
// Unavailable before the caller's deadline, the hangs open the store's breaker (no more
// lookups), and cached keys still authenticate.
func TestAPIKeysStoreHang(t *testing.T) {
	store := &hangStore{release: make(chan struct{})}
	defer close(store.release)
	c := &clock{t0}
	a, err := NewAPIKeys(APIKeysConfig{Store: store, Pepper: testPepper(t), Env: EnvLive, Now: c.now,
		StoreTimeout: 100 * time.Millisecond, BreakerCooldown: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		key := putTestKey(t, &store.MemoryKeyStore, fmt.Sprintf("hang%08d", i))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, r := a.Authenticate(ctx, key)
		late := ctx.Err()
		cancel()
		if r != Unavailable || late != nil {
			t.Fatalf("miss %d: reason %v (caller's context: %v), want Unavailable before the deadline", i, r, late)
		}
	}
	if got := store.calls.Load(); got != 5 {
		t.Errorf("store lookups = %d, want 5 (then the breaker opens)", got)
	}
	if st := a.Guard().State(); st.String() != "open" {
		t.Errorf("breaker = %v, want open", st)
	}
}
