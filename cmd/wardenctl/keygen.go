package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/wardenhq/warden/authn"
)

// keysGenerate makes a key offline for the config file's static key list (authn.api_keys.keys):
// the key goes to stderr, to be handed to its owner once; the YAML entry with only the digest
// goes to stdout. The pepper must be the server's.
func keysGenerate(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys generate", c)
	env := fs.String("env", "live", "live or test")
	owner := fs.String("owner", "", "owner (the principal's subject)")
	tenant := fs.String("tenant", "", "tenant")
	roles := fs.String("roles", "", "comma-separated roles")
	scopes := fs.String("scopes", "", "comma-separated scopes (absent: not narrowed)")
	tier := fs.String("tier", "", "rate-limit tier")
	pepperFile := fs.String("pepper-file", "", "file holding the server's pepper")
	pepperEnv := fs.String("pepper-env", "", "environment variable holding the server's pepper")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := authn.ParseEnvironment(*env)
	if err != nil {
		return err
	}
	if *owner == "" {
		return fmt.Errorf("-owner is required")
	}
	var pepper string
	switch {
	case *pepperFile != "":
		b, err := os.ReadFile(*pepperFile)
		if err != nil {
			return err
		}
		pepper = strings.TrimRight(string(b), "\r\n")
	case *pepperEnv != "":
		v, ok := c.env(*pepperEnv)
		if !ok {
			return fmt.Errorf("environment variable %s is not set", *pepperEnv)
		}
		pepper = v
	default:
		return fmt.Errorf("-pepper-file or -pepper-env is required (the server's authn.api_keys.pepper)")
	}
	p, err := authn.NewPepper([]byte(pepper))
	if err != nil {
		return err
	}
	key, parsed, err := authn.NewAPIKey(e)
	if err != nil {
		return err
	}
	d := p.Digest(parsed.Secret)
	if c.output == "json" {
		// One object, the key with its entry (as keys create prints its secret).
		return c.result("", map[string]any{"key": key, "entry": map[string]any{
			"id": parsed.ID, "env": *env, "digest": hex.EncodeToString(d[:]), "owner": *owner,
			"tenant": *tenant, "roles": splitList(*roles), "scopes": splitList(*scopes), "tier": *tier,
		}})
	}
	fmt.Fprintf(c.stderr, "API key (shown once, store it now): %s\n", key)
	fmt.Fprintf(c.stdout, "- id: %s\n  env: %s\n  digest: %s\n  owner: %q\n", parsed.ID, *env, hex.EncodeToString(d[:]), *owner)
	if *tenant != "" {
		fmt.Fprintf(c.stdout, "  tenant: %q\n", *tenant)
	}
	if rs := splitList(*roles); len(rs) > 0 {
		fmt.Fprintf(c.stdout, "  roles: [%s]\n", quoteAll(rs))
	}
	if ss := splitList(*scopes); len(ss) > 0 {
		fmt.Fprintf(c.stdout, "  scopes: [%s]\n", quoteAll(ss))
	}
	if *tier != "" {
		fmt.Fprintf(c.stdout, "  tier: %q\n", *tier)
	}
	return nil
}

func quoteAll(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
