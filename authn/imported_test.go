package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// importedFormats are an outside company's formats: acme_live_/acme_test_ + 32 characters,
// and bare 40-character keys of either environment.
var importedFormats = []ImportedFormat{
	{Prefix: "acme_live_", Env: EnvLive, MinLen: 42, MaxLen: 42},
	{Prefix: "acme_test_", Env: EnvTest, MinLen: 42, MaxLen: 42},
	{MinLen: 40, MaxLen: 40},
}

func newImportingAPIKeys(t testing.TB, store KeyStore, c *clock, cacheSize int) *APIKeys {
	t.Helper()
	a, err := NewAPIKeys(APIKeysConfig{Store: store, Pepper: testPepper(t), Env: EnvLive,
		Environments: []Environment{EnvLive, EnvTest}, Imported: importedFormats, Now: c.now,
		CacheSize: cacheSize, CacheTTL: time.Hour, RotationGrace: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// foreignKey is the i-th key of a made-up foreign format: prefix + 32 characters.
func foreignKey(prefix string, i int) string {
	return fmt.Sprintf("%s%032x", prefix, uint64(i)*0x9e3779b97f4a7c15)[:len(prefix)+32]
}

func TestImportedKeys(t *testing.T) {
	ctx := context.Background()
	c := &clock{t0}
	a := newImportingAPIKeys(t, &MemoryKeyStore{}, c, 0)
	live, test, bare := foreignKey("acme_live_", 1), foreignKey("acme_test_", 2), foreignKey("", 3)+"12345678"
	for _, k := range []struct {
		key  string
		env  Environment
		spec KeySpec
	}{
		{live, EnvUnspecified, KeySpec{Owner: "alice", Tenant: "acme", Roles: []string{"reader"}, Tier: "paid"}},
		{test, EnvTest, KeySpec{Owner: "bob"}},
		{bare, EnvTest, KeySpec{Owner: "carol"}},
	} {
		rec, err := a.Import(ctx, k.key, k.env, k.spec)
		if err != nil {
			t.Fatalf("Import(%q): %v", k.key, err)
		}
		if !rec.Imported || rec.ID != ImportedKeyID(testPepper(t).DigestImported(k.key)) || !ValidAPIKeyID(rec.ID) {
			t.Fatalf("Import(%q) record = %+v", k.key, rec)
		}
	}
	native, _, err := a.Create(ctx, KeySpec{Owner: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	nativeTest, pk, _ := NewAPIKey(EnvTest)
	if err := a.Store().Put(ctx, KeyRecord{ID: pk.ID, Env: EnvTest, Digest: testPepper(t).Digest(pk.Secret), Owner: "erin"}); err != nil {
		t.Fatal(err)
	}

	// One character of the native key changed (never to itself: the key is random).
	typo := byte('Q')
	if native[30] == typo {
		typo = 'R'
	}
	mistyped := native[:30] + string(typo) + native[31:]

	for _, tt := range []struct {
		name        string
		key         string
		want        Reason
		wantSubject string
		wantEnv     Environment
		wantLookups uint64
	}{
		{"imported live", live, OK, "alice", EnvLive, 1},
		{"imported live, cached", live, OK, "alice", EnvLive, 0},
		{"imported test", test, OK, "bob", EnvTest, 1},
		{"imported without prefix", bare, OK, "carol", EnvTest, 1},
		{"native live beside imported", native, OK, "dave", EnvLive, 1},
		{"native test in the same deployment", nativeTest, OK, "erin", EnvTest, 1},
		{"foreign key of no format", "acme_live_short", Malformed, "", 0, 0},
		{"foreign key with a character a header cannot carry", live[:41] + "!", Malformed, "", 0, 0},
		{"unknown imported key", foreignKey("acme_live_", 99), Unknown, "", 0, 1},
		{"a live key's text under the test prefix", "acme_test_" + live[10:], Unknown, "", 0, 1},
		{"mistyped native key (no imported format fits)", mistyped, Malformed, "", 0, 0},
	} {
		before := a.Stats().Lookups
		p, got := a.Authenticate(ctx, tt.key)
		if got != tt.want || p.Subject != tt.wantSubject || p.Env != tt.wantEnv {
			t.Errorf("%s: got %v %q %v, want %v %q %v", tt.name, got, p.Subject, p.Env, tt.want, tt.wantSubject, tt.wantEnv)
		}
		if n := a.Stats().Lookups - before; n != tt.wantLookups {
			t.Errorf("%s: store lookups = %d, want %d", tt.name, n, tt.wantLookups)
		}
	}

	// Import refuses what it cannot store faithfully.
	for _, tt := range []struct {
		name string
		key  string
		env  Environment
		want error
	}{
		{"again", live, EnvUnspecified, ErrKeyExists},
		{"no format", "xyz", EnvLive, ErrImportedFormat},
		{"a Warden key", native, EnvLive, nil},
		{"environment against the format's", foreignKey("acme_live_", 5), EnvTest, nil},
		{"no environment at all", foreignKey("", 6) + "12345678", EnvUnspecified, nil},
	} {
		_, err := a.Import(ctx, tt.key, tt.env, KeySpec{Owner: "x"})
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("Import %s: error = %v, want %v", tt.name, err, tt.want)
		}
	}

	// Revocable and rotatable like native keys.
	id := ImportedKeyID(testPepper(t).DigestImported(test))
	if err := a.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, got := a.Authenticate(ctx, test); got != Revoked {
		t.Errorf("revoked imported key: %v, want %v", got, Revoked)
	}
	newKey, rec, err := a.Rotate(ctx, ImportedKeyID(testPepper(t).DigestImported(live)))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Imported || rec.Env != EnvLive || !strings.HasPrefix(newKey, livePrefix) {
		t.Errorf("rotated imported key: %q %+v, want a native live key", newKey, rec)
	}
	for _, k := range []string{live, newKey} {
		if p, got := a.Authenticate(ctx, k); got != OK || p.Subject != "alice" {
			t.Errorf("after rotation, %q: %v %q, want OK alice", k, got, p.Subject)
		}
	}
	c.t = c.t.Add(time.Hour)
	if _, got := a.Authenticate(ctx, live); got != Revoked {
		t.Errorf("rotated-out imported key after the grace: %v, want %v", got, Revoked)
	}
}

func TestImportedKeyAsBearerToken(t *testing.T) {
	ctx := context.Background()
	a := newImportingAPIKeys(t, &MemoryKeyStore{}, &clock{t0}, 0)
	key := foreignKey("acme_live_", 7)
	if _, err := a.Import(ctx, key, EnvUnspecified, KeySpec{Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	au, err := NewAuthenticator(Config{APIKeys: a})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Credentials{
		{BearerToken: key},
		{Headers: map[string][]string{"authorization": {"Bearer " + key}}},
		{Headers: map[string][]string{"x-api-key": {key}}},
	} {
		if p, r := au.Authenticate(ctx, c); r != OK || p.Subject != "alice" {
			t.Errorf("Authenticate(%+v) = %v %q, want OK alice", c, r, p.Subject)
		}
	}
}

func TestImportedFormatConfig(t *testing.T) {
	for _, f := range []ImportedFormat{
		{Prefix: "a", MinLen: 10},
		{MinLen: 30, MaxLen: 20},
		{MaxLen: MaxImportedKeyLen + 1},
		{Prefix: "bad prefix"},
		{Prefix: "acme_", Env: EnvTest}, // not accepted by a live-only deployment
	} {
		_, err := NewAPIKeys(APIKeysConfig{Store: &MemoryKeyStore{}, Pepper: testPepper(t), Env: EnvLive, Imported: []ImportedFormat{f}})
		if err == nil {
			t.Errorf("NewAPIKeys with format %+v: error = nil, want one", f)
		}
	}
}

func TestImportedCachedAllocs(t *testing.T) {
	ctx := context.Background()
	a := newImportingAPIKeys(t, &MemoryKeyStore{}, &clock{t0}, 0)
	key := foreignKey("acme_test_", 1)
	if _, err := a.Import(ctx, key, EnvUnspecified, KeySpec{Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	wantCachedZeroAllocs(t, a, key)
}

func TestDigestImportedIsHMAC(t *testing.T) {
	p := testPepper(t)
	key := foreignKey("acme_live_", 3)
	// The native digest is the same HMAC over a shorter message: both agree where both fit.
	if p.DigestImported(key) != p.Digest(key) {
		t.Errorf("DigestImported and Digest differ on a 42-byte key")
	}
	if p.DigestImported(strings.Repeat("k", MaxImportedKeyLen+1)) != (Digest{}) {
		t.Errorf("DigestImported of an over-long key is not the zero digest")
	}
}

func FuzzImportedFormatMatch(f *testing.F) {
	f.Add("acme_live_0123456789abcdef0123456789abcdef")
	f.Add("")
	f.Add("acme_test_\x00")
	a, err := NewAPIKeys(APIKeysConfig{Store: &MemoryKeyStore{}, Pepper: testPepper(f), Env: EnvLive,
		Environments: []Environment{EnvLive, EnvTest}, Imported: importedFormats})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key string) {
		fm := a.importedFormat(key)
		if fm == nil {
			return
		}
		if len(key) < fm.MinLen || len(key) > fm.MaxLen || !strings.HasPrefix(key, fm.Prefix) || strings.ContainsAny(key, " \t\r\n\x00,;\"") {
			t.Fatalf("importedFormat(%q) = %+v", key, fm)
		}
	})
}

// million imports 1,000,000 foreign-format keys (half live, half test) once per process, for
// BenchmarkImportedKeys1M.
var million struct {
	once    sync.Once
	a       *APIKeys
	keys    []string
	took    time.Duration
	rssMB   float64
	heapMB  float64
	importE error
}

const millionKeys = 1_000_000

// BenchmarkImportedKeys1M imports 1,000,000 foreign-format keys into a memory store (timed
// once, reported as import_s, and the process's RSS and live heap after it as rss_MB and
// heap_MB), then authenticates with random ones of them, all cached: 0 allocs/op.
//
//	go test -run '^$' -bench ImportedKeys1M -benchmem -benchtime 2000000x ./authn/
func BenchmarkImportedKeys1M(b *testing.B) {
	if testing.Short() {
		b.Skip("imports 1M keys")
	}
	ctx := context.Background()
	million.once.Do(func() {
		a := newImportingAPIKeys(b, &MemoryKeyStore{}, &clock{t0}, millionKeys)
		keys := make([]string, millionKeys)
		for i := range keys {
			keys[i] = foreignKey([]string{"acme_live_", "acme_test_"}[i%2], i)
		}
		start := time.Now()
		for i, k := range keys {
			if _, err := a.Import(ctx, k, EnvUnspecified, KeySpec{Owner: "user-" + k[10:18], Tenant: "acme", Tier: "paid"}); err != nil {
				million.importE = err
				return
			}
			if i%250_000 == 249_999 {
				fmt.Fprintf(os.Stderr, "imported %d keys in %v\n", i+1, time.Since(start).Round(time.Millisecond))
			}
		}
		million.took = time.Since(start)
		for _, k := range keys { // fill the cache: the benchmark measures the hot path
			if _, r := a.Authenticate(ctx, k); r != OK {
				million.importE = fmt.Errorf("authenticate %q: %v", k, r)
				return
			}
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		million.heapMB = float64(ms.HeapAlloc) / (1 << 20)
		million.rssMB = rssMB()
		million.a, million.keys = a, keys
	})
	if million.importE != nil {
		b.Fatal(million.importE)
	}
	a, keys := million.a, million.keys
	idx := make([]int32, 1<<16)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range idx {
		idx[i] = int32(r.IntN(len(keys)))
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, r := a.Authenticate(ctx, keys[idx[7]]); r != OK {
			b.Fatal(r)
		}
	}); n != 0 {
		b.Fatalf("Authenticate on one of 1M cached imported keys allocs = %v, want 0", n)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, r := a.Authenticate(ctx, keys[idx[i&(len(idx)-1)]]); r != OK {
			b.Fatal(r)
		}
	}
	b.ReportMetric(million.took.Seconds(), "import_s")
	b.ReportMetric(million.rssMB, "rss_MB")
	b.ReportMetric(million.heapMB, "heap_MB")
}

// rssMB reads the process's resident set size from /proc (0 where there is none).
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

func TestStaticImportedKey(t *testing.T) {
	ctx := context.Background()
	p := testPepper(t)
	key := foreignKey("acme_live_", 11)
	d := p.DigestImported(key)
	recs, err := StaticKeyRecords("keys", []StaticKey{{Imported: true, Env: "live", Digest: fmt.Sprintf("%x", d[:]), Owner: "ops"}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAPIKeys(APIKeysConfig{Store: NewStaticKeys(&MemoryKeyStore{}, recs), Pepper: p, Env: EnvLive, Imported: importedFormats[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if pr, r := a.Authenticate(ctx, key); r != OK || pr.Subject != "ops" || pr.CredentialID != ImportedKeyID(d) {
		t.Errorf("static imported key: %v %+v, want OK for ops", r, pr)
	}
	_, err = StaticKeyRecords("keys", []StaticKey{{Imported: true, ID: "AbCdEf012345", Env: "live", Digest: fmt.Sprintf("%x", d[:]), Owner: "ops"}})
	if err == nil || !strings.Contains(err.Error(), "keys[0].id") {
		t.Errorf("static imported key with its own id: error = %v, want one at keys[0].id", err)
	}
}
