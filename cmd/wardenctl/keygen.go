package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/wardenhq/warden/authn"
)

// keysGenerate makes a key offline for the config file's static key list (authn.api_keys.keys):
// the key goes to stderr, to be handed to its owner once; the YAML entry with only the digest
// goes to stdout. The pepper must be the server's.
func keysGenerate(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys generate", c)
	o := offline(fs)
	tenant := fs.String("tenant", "", "tenant")
	roles := fs.String("roles", "", "comma-separated roles")
	scopes := fs.String("scopes", "", "comma-separated scopes (absent: not narrowed)")
	tier := fs.String("tier", "", "rate-limit tier")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, p, err := o.load(c)
	if err != nil {
		return err
	}
	env, owner := o.env, o.owner
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

// offlineFlags are the flags of the commands that make a config entry without a server.
type offlineFlags struct {
	env, owner, pepperFile, pepperEnv *string
}

func offline(fs *flag.FlagSet) *offlineFlags {
	return &offlineFlags{
		env:        fs.String("env", "live", "live or test"),
		owner:      fs.String("owner", "", "owner (the principal's subject)"),
		pepperFile: fs.String("pepper-file", "", "file holding the server's pepper"),
		pepperEnv:  fs.String("pepper-env", "", "environment variable holding the server's pepper"),
	}
}

// load checks the environment and owner and reads the server's pepper from a file or an
// environment variable.
func (o *offlineFlags) load(c *cli) (authn.Environment, *authn.Pepper, error) {
	e, err := authn.ParseEnvironment(*o.env)
	if err != nil {
		return 0, nil, err
	}
	if *o.owner == "" {
		return 0, nil, fmt.Errorf("-owner is required")
	}
	var pepper string
	switch {
	case *o.pepperFile != "":
		b, err := os.ReadFile(*o.pepperFile)
		if err != nil {
			return 0, nil, err
		}
		pepper = strings.TrimRight(string(b), "\r\n")
	case *o.pepperEnv != "":
		v, ok := c.env(*o.pepperEnv)
		if !ok {
			return 0, nil, fmt.Errorf("environment variable %s is not set", *o.pepperEnv)
		}
		pepper = v
	default:
		return 0, nil, fmt.Errorf("-pepper-file or -pepper-env is required (the server's authn.api_keys.pepper)")
	}
	p, err := authn.NewPepper([]byte(pepper))
	return e, p, err
}

// keysDigest prints the authn.api_keys.imported_keys entry of a key Warden did not issue,
// read from stdin (so that it stays out of the shell's history): its digest, never the key.
func keysDigest(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys digest", c)
	o := offline(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, p, err := o.load(c)
	if err != nil {
		return err
	}
	env, owner := o.env, o.owner
	b, err := io.ReadAll(io.LimitReader(c.stdin, authn.MaxImportedKeyLen+2))
	if err != nil {
		return err
	}
	key := strings.TrimRight(string(b), "\r\n")
	if key == "" || len(key) > authn.MaxImportedKeyLen {
		return fmt.Errorf("give the key on stdin (at most %d bytes)", authn.MaxImportedKeyLen)
	}
	d := p.DigestImported(key)
	fmt.Fprintf(c.stdout, "- digest: %s\n  environment: %s\n  owner: %q\n", hex.EncodeToString(d[:]), *env, *owner)
	return nil
}
