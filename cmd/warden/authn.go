package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/authn/redisauth"
	"github.com/wardenhq/warden/fielderr"
	"github.com/wardenhq/warden/idheader"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/service"
)

// authnSection is the authn section: each method's own Config (api_keys aside), and the
// settings of the server around them.
type authnSection struct {
	// api_key_header (default x-api-key) and max_credential_bytes.
	authn.ExtractConfig `yaml:",inline"`
	// AdminRoles may call AdminService. Default [warden-admin].
	AdminRoles []string                   `yaml:"admin_roles"`
	APIKeys    *apiKeysSection            `yaml:"api_keys"`
	JWT        *jwtSection                `yaml:"jwt"`
	MTLS       *authn.MTLSConfig          `yaml:"mtls"`
	OAuth2     *authn.IntrospectionConfig `yaml:"oauth2"`
	// PreferPeer lets the mTLS identity decide when a request also carries a bearer
	// credential. Default false: the bearer credential decides.
	PreferPeer bool `yaml:"prefer_peer"`
	// IdentityHeaders names the headers that tell the upstream who called. Default x-warden-*.
	IdentityHeaders idheader.Config `yaml:"identity_headers"`
}

// jwtSection is authn.jwt: jwtauth.Config and the revocation store's timeout.
type jwtSection struct {
	jwtauth.Config `yaml:",inline"`
	// RevocationTimeout caps one revocation store lookup (Redis) on the request path; its
	// budget is the caller's deadline less a margin for answering. Default 500ms.
	RevocationTimeout time.Duration `yaml:"revocation_timeout"`
}

// apiKeysSection is authn.api_keys: authn.APIKeysConfig, and the pepper and static keys
// that cmd/warden turns into its Pepper and Store.
type apiKeysSection struct {
	authn.APIKeysConfig `yaml:",inline"`
	// ImportedKeys are static imported keys: the key through a secret reference, or its
	// digest (wardenctl keys digest). Read-only like Keys.
	ImportedKeys []importedKeyYAML `yaml:"imported_keys"`
	// Pepper keys the HMAC that stores key secrets (at least 32 bytes). Required.
	Pepper config.Secret `yaml:"pepper"`
	// Keys are static keys, stored as digests (wardenctl keys generate prints an entry).
	// They are read-only: to revoke one, remove it from the file.
	Keys []authn.StaticKey `yaml:"keys"`
}

// importedKeyYAML is one static imported key: Key (a secret reference) or Digest.
type importedKeyYAML struct {
	Key         config.Secret `yaml:"key"`
	Digest      string        `yaml:"digest"`
	Environment string        `yaml:"environment"`
	Owner       string        `yaml:"owner"`
	Tenant      string        `yaml:"tenant"`
	Roles       []string      `yaml:"roles"`
	Scopes      []string      `yaml:"scopes"`
	Tier        string        `yaml:"tier"`
	Expires     time.Time     `yaml:"expires"`
}

func (a *app) buildAuthn(cfg *config.File, d *service.Deps) error {
	s := cfg.Authn
	if s.IsZero() {
		return nil
	}
	var y authnSection
	if err := s.Decode("authn", &y); err != nil {
		return err
	}
	bad := func(path, format string, args ...any) error {
		return fieldError(s, "authn", path, fmt.Sprintf(format, args...))
	}
	y.APIKeyHeader = strings.ToLower(y.APIKeyHeader)
	ac := &service.Authn{APIKeyHeader: y.APIKeyHeader, AdminRoles: y.AdminRoles}
	ncfg := authn.Config{Extract: y.ExtractConfig, PreferPeer: y.PreferPeer}
	if len(ac.AdminRoles) == 0 {
		ac.AdminRoles = []string{"warden-admin"}
	}
	observe("authn.identity_headers", y.IdentityHeaders)
	ids, err := idheader.New(y.IdentityHeaders)
	if err != nil {
		return s.Position(fielderr.Prefix("identity_headers", err))
	}
	d.Headers.Identity = ids

	if k := y.APIKeys; k != nil {
		if k.Env == authn.EnvUnspecified {
			_, err := authn.ParseEnvironment("")
			return bad("api_keys.environment", "%v", err)
		}
		if k.Pepper.IsZero() {
			return bad("api_keys.pepper", "required: ${ENV_VAR} or file:/path holding at least 32 random bytes")
		}
		pepper, err := authn.NewPepper([]byte(k.Pepper.Reveal()))
		if err != nil {
			return bad("api_keys.pepper", "%v", err)
		}
		kc := k.APIKeysConfig
		kc.Pepper, kc.Logger = pepper, a.log
		env := kc.Env
		// A key set without a store checks the imported keys' formats and environments.
		check, err := authn.NewAPIKeys(authn.APIKeysConfig{Store: &authn.MemoryKeyStore{}, Pepper: pepper, Env: env,
			Environments: kc.Environments, Imported: kc.Imported})
		if err != nil {
			return s.Position(fielderr.Prefix("api_keys", err))
		}
		var imported []authn.StaticKey
		for i, ik := range k.ImportedKeys {
			sk := authn.StaticKey{Imported: true, Env: ik.Environment, Digest: ik.Digest, Owner: ik.Owner, Tenant: ik.Tenant,
				Roles: ik.Roles, Scopes: ik.Scopes, Tier: ik.Tier, ExpiresAt: ik.Expires}
			field := fmt.Sprintf("api_keys.imported_keys[%d]", i)
			switch {
			case ik.Key.IsZero() == (ik.Digest == ""):
				return bad(field, "give key (${ENV_VAR} or file:/path) or digest, not both")
			case !ik.Key.IsZero():
				var given authn.Environment
				if ik.Environment != "" {
					if given, err = authn.ParseEnvironment(ik.Environment); err != nil {
						return bad(field+".environment", "%v", err)
					}
				}
				ev, err := check.ImportedEnv(ik.Key.Reveal(), given)
				if err != nil {
					return bad(field+".key", "%s", strings.TrimPrefix(err.Error(), "authn: import API key: "))
				}
				d := pepper.DigestImported(ik.Key.Reveal())
				sk.Digest, sk.Env = hex.EncodeToString(d[:]), ev.String()
			}
			imported = append(imported, sk)
		}
		recs, err := authn.StaticKeyRecords("authn.api_keys.keys", k.Keys)
		if err == nil {
			var more []authn.KeyRecord
			more, err = authn.StaticKeyRecords("authn.api_keys.imported_keys", imported)
			recs = append(recs, more...)
		}
		if err != nil {
			return s.Position(err)
		}
		kc.Store = authn.NewStaticKeys(a.stores.apiKeys, recs)
		observe("authn.api_keys", kc)
		observe("authn.api_keys.pepper", pepper.DigestImported("golden-probe"))
		observe("authn.api_keys.records", recs)
		keys, err := authn.NewAPIKeys(kc)
		if err != nil {
			return s.Position(fielderr.Prefix("api_keys", err))
		}
		ac.APIKeys, ncfg.APIKeys = keys, keys
		_, ac.EphemeralKeys = a.stores.apiKeys.(*authn.MemoryKeyStore) // no Redis: keys vanish on restart
		a.next.guards = append(a.next.guards, keys.Guard())
		a.next.keys = keys
		a.next.runs = append(a.next.runs, keys.Run)
		if a.redis != nil {
			sub, err := redisauth.NewSubscriber(redisauth.SubscriberConfig{Redis: a.apiKeysRedis(), Target: keys, Logger: a.log})
			if err != nil {
				return bad("api_keys", "%v", err)
			}
			a.next.runs = append(a.next.runs, sub.Run)
		}
	}

	if j := y.JWT; j != nil {
		jc := j.Config
		jc.Revocations, jc.Logger, jc.Previous = a.guardRevocations(j.RevocationTimeout), a.log, a.jwt
		for i := range jc.Issuers {
			jc.Issuers[i].JWKSFile = relativeTo(cfg.Path, jc.Issuers[i].JWKSFile)
		}
		observe("authn.jwt", jc)
		observe("authn.jwt.revocation_timeout", j.RevocationTimeout)
		v, err := jwtauth.New(jc)
		if err != nil {
			return bad("jwt", "%v", err)
		}
		// The key sets are loaded and checked now, before this config can replace the running
		// one. Each fetch is bounded by its issuer's fetch_timeout.
		if err := v.Load(context.Background()); err != nil {
			// Load names the issuer's jwks_file or jwks_url; a refused set says which key, at
			// which line of the set, without the issuer's name again.
			e := first(err)
			var fe *fielderr.Error
			var je *jwtauth.JWKSError
			if errors.As(e, &fe) && errors.As(e, &je) {
				e = fielderr.New(fe.Path, je)
			}
			return s.Position(fielderr.Prefix("jwt", e))
		}
		a.next.jwt = v
		ncfg.JWT, ac.Revoker = v, v
		a.next.runs = append(a.next.runs, v.Run)
	}

	if m := y.MTLS; m != nil {
		mc := *m
		mc.GatewayRootsFile = relativeTo(cfg.Path, mc.GatewayRootsFile)
		observe("authn.mtls", mc)
		mt, err := authn.NewMTLS(mc)
		if err != nil {
			return s.Position(fielderr.Prefix("mtls", err))
		}
		ncfg.MTLS = mt
	}

	if o := y.OAuth2; o != nil {
		ic := *o
		ic.Logger = a.log
		observe("authn.oauth2", ic)
		in, err := authn.NewIntrospector(ic)
		if err != nil {
			return bad("oauth2", "%v", err)
		}
		a.next.guards = append(a.next.guards, in.Guard())
		ncfg.OAuth2 = in
	}
	observe("authn", ncfg)
	observe("authn.service", struct {
		APIKeyHeader string
		AdminRoles   []string
	}{ac.APIKeyHeader, ac.AdminRoles})
	au, err := authn.NewAuthenticator(ncfg)
	if err != nil {
		return s.Errorf("authn", "enable at least one of api_keys, jwt, mtls, oauth2")
	}
	ac.Authenticator = au
	d.Authn = ac
	return nil
}

func (a *app) apiKeysRedis() redisauth.Config {
	return redisauth.Config{Client: a.redis, Prefix: a.cfg.Redis.KeyPrefix + apiKeyKeys, Channel: a.cfg.Redis.KeyPrefix + apiKeyKeys + "invalidate"}
}
