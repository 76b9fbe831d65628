package main

import (
	"context"
	"encoding/hex"
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
	p, err := loadPepper(c, *pepperFile, *pepperEnv)
	if err != nil {
		return err
	}
	key, parsed, err := authn.NewAPIKey(e)
	if err != nil {
		return err
	}
	d := p.Digest(parsed.Secret)
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

// loadPepper reads the server's pepper from a file or an environment variable.
func loadPepper(c *cli, file, envName string) (*authn.Pepper, error) {
	var pepper string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		pepper = strings.TrimRight(string(b), "\r\n")
	case envName != "":
		v, ok := c.env(envName)
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set", envName)
		}
		pepper = v
	default:
		return nil, fmt.Errorf("-pepper-file or -pepper-env is required (the server's authn.api_keys.pepper)")
	}
	return authn.NewPepper([]byte(pepper))
}

// keysDigest prints the authn.api_keys.imported_keys entry of a key Warden did not issue,
// read from stdin (so that it stays out of the shell's history): its digest, never the key.
func keysDigest(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys digest", c)
	env := fs.String("env", "live", "live or test")
	owner := fs.String("owner", "", "owner (the principal's subject)")
	pepperFile := fs.String("pepper-file", "", "file holding the server's pepper")
	pepperEnv := fs.String("pepper-env", "", "environment variable holding the server's pepper")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := authn.ParseEnvironment(*env); err != nil {
		return err
	}
	if *owner == "" {
		return fmt.Errorf("-owner is required")
	}
	p, err := loadPepper(c, *pepperFile, *pepperEnv)
	if err != nil {
		return err
	}
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
