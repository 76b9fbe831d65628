// Command wardenctl is Warden's admin CLI: API keys, token revocation, rate-limit counters,
// webhook signing, and dry-run decisions.
//
//	wardenctl -addr 127.0.0.1:50051 keys create -owner alice -tenant acme -roles user -scopes orders:read
//	wardenctl keys rotate -id KEYID    # the old key stays valid for authn.api_keys.rotation_grace (-grace: shorter)
//	wardenctl tokens revoke -jti 4f1c… -exp 2026-12-01T00:00:00Z
//	wardenctl limits get -domain api -d tenant=acme,path=/v1/orders
//	wardenctl webhook sign -scheme github -secret file:/run/secrets/gh -body payload.json
//	wardenctl check -method GET -path /v1/users/alice/orders -H "authorization: Bearer sk-live-…"
//	wardenctl -o json keys list -owner alice | jq .keys[].id
//
// Output is indented JSON (responses) and short lines for people by default; with -o json,
// every command writes exactly one compact JSON object per line on stdout (what a script
// parses), and notes for people stay on stderr.
//
// Admin calls authenticate with -api-key or $WARDEN_API_KEY (sent as authorization: Bearer).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv); err != nil {
		if s, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "wardenctl: %s: %s\n", s.Code(), s.Message())
		} else {
			fmt.Fprintln(os.Stderr, "wardenctl:", err)
		}
		os.Exit(1)
	}
}

// cli carries the global flags and the output streams to each command.
type cli struct {
	addr    string
	apiKey  string
	timeout time.Duration
	output  string // "text" or "json"
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	env     func(string) (string, bool)
	conn    *grpc.ClientConn
}

type command struct {
	name, usage string
	run         func(ctx context.Context, c *cli, args []string) error
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) (string, bool)) error {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, env: env}
	fs := flag.NewFlagSet("wardenctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:50051", "Warden's gRPC address")
	fs.StringVar(&c.apiKey, "api-key", "", "admin API key (default $WARDEN_API_KEY)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "deadline per call")
	fs.StringVar(&c.output, "o", "text", "output: text (indented JSON and lines for people) or json (one JSON object per line)")
	cmds := commands()
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wardenctl [-addr host:port] [-api-key key] [-o text|json] <command> [flags]\n\ncommands:")
		for _, cmd := range cmds {
			fmt.Fprintf(stderr, "  %-16s %s\n", cmd.name, cmd.usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.output != "text" && c.output != "json" {
		return fmt.Errorf("-o must be text or json, not %q", c.output)
	}
	if c.apiKey == "" {
		c.apiKey, _ = env("WARDEN_API_KEY")
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errUsage
	}
	defer func() {
		if c.conn != nil {
			c.conn.Close()
		}
	}()
	// Commands are "group sub" (keys create) or single words (check).
	for _, cmd := range cmds {
		parts := strings.Fields(cmd.name)
		if len(rest) >= len(parts) && strings.Join(rest[:len(parts)], " ") == cmd.name {
			return c.unreachable(cmd.run(ctx, c, rest[len(parts):]))
		}
	}
	fs.Usage()
	return fmt.Errorf("unknown command %q", strings.Join(rest, " "))
}

// dial connects lazily, so that local commands (webhook sign) need no server.
func (c *cli) dial() (*grpc.ClientConn, error) {
	if c.conn != nil {
		return c.conn, nil
	}
	cc, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c.conn = cc
	return cc, nil
}

// unreachable names the address in the error of a call that never reached Warden (err
// otherwise): the connection is not up, so the UNAVAILABLE is not Warden's answer.
func (c *cli) unreachable(err error) error {
	if status.Code(err) != codes.Unavailable || c.conn == nil || c.conn.GetState() == connectivity.Ready {
		return err
	}
	return fmt.Errorf("cannot reach Warden at %s (is it running? -addr sets the address): %s", c.addr, status.Convert(err).Message())
}

// callCtx adds the deadline and the admin credentials.
func (c *cli) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	if c.apiKey != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.apiKey)
	}
	return ctx, cancel
}

// print writes a response as JSON: indented, or on one line with -o json.
func (c *cli) print(m proto.Message) error {
	opts := protojson.MarshalOptions{Multiline: true, Indent: "  "}
	if c.output == "json" {
		opts = protojson.MarshalOptions{}
	}
	b, err := opts.Marshal(m)
	if err != nil {
		return err
	}
	if c.output == "json" {
		// protojson may space its output differently from run to run; compact it so that
		// one object is one stable line.
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return err
		}
		b = buf.Bytes()
	}
	_, err = fmt.Fprintln(c.stdout, string(b))
	return err
}

// result writes the outcome of a command that has no response message: text for people, or
// v as one JSON line with -o json.
func (c *cli) result(text string, v any) error {
	if c.output != "json" {
		_, err := fmt.Fprintln(c.stdout, text)
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, string(b))
	return err
}

func newFlags(name string, c *cli) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}

// listFlag collects a comma-separated list.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
