// Package jwtauth verifies JWT bearer tokens (compact JWS, RFC 7515/7519) against the keys of
// configured issuers, published as JWK Sets (RFC 7517) in a file or at an http(s) URL, and
// turns a verified token into an authn.Principal. It is the only Warden package that deals
// with JOSE.
//
// It knows nothing of gRPC, HTTP headers or Envoy: it takes the token string (without the
// "Bearer " prefix) and returns a Principal and an authn.Reason. It does not decide what the
// principal may do (authz) and it does not extract credentials from requests (authn).
//
// # Why no JOSE library
//
// The verifier is a focused implementation on the standard library's crypto (crypto/rsa
// PKCS #1 v1.5 and PSS, crypto/ecdsa P-256, crypto/ed25519) with its own strict compact-JWS
// parser. The candidates were weighed on evidence:
//
//   - github.com/golang-jwt/jwt/v5 has had algorithm-confusion advisories in its history
//     (CVE-2020-26160 aud bypass in v3, CVE-2024-51744 error handling, CVE-2025-30204 header
//     parsing DoS); it selects the verification method from the token's alg header through a
//     keyfunc, so binding the algorithm to the key is left to each caller; it decodes JSON
//     with encoding/json, which silently accepts duplicate members and matches field names
//     case-insensitively ({"alg":"RS256","ALG":"none"}); JWKS handling would be a second
//     dependency (keyfunc/v3), whose refresh on an unknown kid can block a request up to
//     RateLimitWaitMax.
//   - github.com/go-jose/go-jose/v4 binds algorithms better (ParseSigned takes an allow-list)
//     but also decodes with a duplicate-tolerant JSON decoder, is a large API (JWE, JWK
//     thumbprints, x5c chains) of which Warden needs a tenth, and has had its own advisories
//     (CVE-2024-28180 decompression bomb in JWE, CVE-2025-27144 excessive memory on many
//     dots).
//   - Both end in the same stdlib calls this package makes, so neither is faster; the parser
//     here does less (no reflection into claim structs) and its cost is dominated by the
//     signature check.
//
// Owning ~1,000 lines lets every guarantee below be enforced in one place and proven by this
// package's tests and fuzz targets.
//
// # Guarantees
//
//   - Compact serialization only: exactly three segments of canonical base64url (no padding,
//     no standard-alphabet characters, no whitespace, no non-zero trailing bits). JWE and JSON
//     serialization are refused. Tokens longer than Config.MaxTokenBytes (8 KiB) are refused
//     before any decoding.
//   - Header and claims are decoded by a strict JSON decoder: duplicate member names (after
//     unescaping), invalid UTF-8, trailing data and nesting deeper than 32 levels are refused.
//     Members are matched by exact name.
//   - The algorithm is bound to the key: an RSA key (>= 2048 bits) verifies RS256 and PS256
//     (or only the one named by its "alg"), an EC P-256 key only ES256, an OKP Ed25519 key only
//     EdDSA; the set is further narrowed by the issuer's allow-list. The header's alg only
//     selects among what the key allows. "none" in any casing, HS*, and every other algorithm
//     are refused (UnsupportedAlgorithm); symmetric ("oct") keys in a JWK Set are ignored.
//   - ES256 signatures must be raw r||s of 64 bytes (DER is refused); r or s of zero is
//     refused before the curve arithmetic. PS256 requires a salt as long as the hash
//     (RFC 7518 §3.5).
//   - Per RFC 8725 §3.10, the key-locating headers "jku", "x5u" and "jwk" are never followed:
//     a token carrying any of them is refused as Malformed, because a token from a configured
//     issuer has no reason to name its own key source. "x5c", "x5t" and "x5t#S256" are
//     ignored (some issuers send them) and never used to find or build a key. A "crit" header
//     is refused: this package understands no extension.
//   - Issuers are selected by the unverified "iss" claim, which is then bound by the
//     signature. "exp" is required; "exp", "nbf" and "iat" are checked with the issuer's
//     leeway (30 s by default) and an "iat" in the future is refused. "aud" (string or array)
//     must contain one of the issuer's audiences. "typ" is checked when the issuer lists
//     accepted types (for example "at+jwt", RFC 9068); "application/" may be omitted and the
//     comparison ignores case.
//   - Scope and role strings are split on U+0020 only (RFC 6749 §3.3): any other character,
//     other Unicode spaces and control characters included, stays inside its value, so
//     "read\u00a0admin" is one scope that matches nothing. "scope" must be a string, "scp" a
//     string or an array of strings; anything else refuses the token (Malformed).
//
// # Keys and refresh
//
// Keys are matched by exact "kid" (an opaque string: no path or pattern meaning, so
// traversal or injection strings simply match nothing). A token with a kid never uses a key
// without one. A token without a kid is verified only when exactly one key of the issuer's set
// (with or without a kid) can verify its algorithm; otherwise it is Unknown. Two keys with the
// same kid make the whole set invalid (the last good set stays).
//
// A set replaces the last good one only if it parses, is not empty and holds no
// unacceptable key: RSA outside 2048–8192 bits, "use" other than "sig", "key_ops" without
// "verify", kty "oct", private material, malformed or off-curve key material, an "alg" the
// key type contradicts. Such a key refuses the whole set (a *JWKSError with the key's line),
// unless IssuerConfig.DropUnacceptableKeys drops it with a warning. Keys of another type,
// curve or algorithm are skipped. Verifier.Load loads every set when a config is built, so
// that a bad set fails the build instead of leaving an issuer without keys; Config.Previous
// carries the last good sets across a reload. Redirects of a JWKS URL are refused (or, with
// AllowSameHostRedirects, followed to the same scheme and host only). Every failed or
// refused fetch is logged and counted (Verifier.JWKSStats).
//
// Run refreshes every set in the background (every 5 min
// by default), keeping the last good set when a fetch fails. An unknown kid triggers at most
// one refetch per cooldown (30 s by default) per issuer; the request that triggered it waits
// for that fetch at most Config.UnknownKIDWait (100 ms by default, and never past its context's
// deadline less a margin for answering, so that a 20 ms caller still gets its answer) and
// otherwise gets Unknown while the fetch completes in the background. Fetches
// are limited in size (1 MiB) and time (5 s), and only http and https URLs are fetched.
//
// # Revocation and cache
//
// A token whose "jti" was revoked (RevocationStore, in memory here or shared through Redis
// in jwtauth/redisrevoke) is refused until its exp plus leeway (Verifier.Revoke adds the
// leeway). A token without a jti cannot be revoked: list "jti" in RequiredClaims to refuse
// such tokens. A failing RevocationStore makes Verify answer Unavailable (fail closed). Verified tokens are cached by the SHA-256
// of the token: a hit costs about a microsecond and no allocation, is never served at or
// after exp, and still consults the RevocationStore on every call. An entry is bound to the
// key that verified it: when a refresh removes that key from the set (or gives its kid other
// key material), the token goes back to full verification against the current set, so a
// withdrawn key's tokens are refused from the next refresh on.
//
// Example:
//
//	v, err := jwtauth.New(jwtauth.Config{
//		Issuers: []jwtauth.IssuerConfig{{
//			Issuer:     "https://id.example.com/",
//			Audiences:  []string{"orders-api"},
//			JWKSURL:    "https://id.example.com/.well-known/jwks.json",
//			Algorithms: []string{"RS256"},
//			Claims:     jwtauth.ClaimsConfig{Roles: "realm_access.roles", Tenant: "org_id"},
//		}},
//		Logger: logger,
//	})
//	if err != nil {
//		return err
//	}
//	g.Go(func() error { return v.Run(ctx) }) // background JWKS refresh
//	p, reason := v.Verify(ctx, token)
//	if reason != authn.OK {
//		// deny; audit reason.String()
//	}
package jwtauth
