package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// importRow is one key of an import file: a CSV row (with a header naming the columns) or a
// JSON line. roles and scopes are lists in JSON, and space- or comma-separated in CSV;
// expires is RFC 3339, empty for a key that does not expire.
type importRow struct {
	Key         string   `json:"key"`
	Owner       string   `json:"owner"`
	Tenant      string   `json:"tenant"`
	Roles       []string `json:"roles"`
	Scopes      []string `json:"scopes"`
	Tier        string   `json:"tier"`
	Expires     string   `json:"expires"`
	Environment string   `json:"environment"`
	Description string   `json:"description"`
}

// importColumns are the CSV columns; key and owner are required.
var importColumns = []string{"key", "owner", "tenant", "roles", "scopes", "tier", "expires", "environment", "description"}

// keysImport reads keys a deployment already issued from a CSV or JSONL file and imports them
// through AdminService.ImportApiKey, in batches on several connections' worth of concurrent
// calls, printing progress to stderr. A refused key is reported by its line number, never by
// its text.
func keysImport(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys import", c)
	format := fs.String("format", "", "csv or jsonl (default: from the file name's extension)")
	batch := fs.Int("batch", 1000, "keys per call (at most 1000)")
	workers := fs.Int("workers", 4, "calls in flight")
	skipExisting := fs.Bool("skip-existing", false, "count keys already stored as imported instead of refused")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: wardenctl keys import [-format csv|jsonl] FILE (- for stdin)")
	}
	if *batch < 1 || *batch > 1000 || *workers < 1 {
		return fmt.Errorf("-batch must be 1..1000 and -workers at least 1")
	}
	name := fs.Arg(0)
	in := c.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	if *format == "" {
		switch {
		case strings.HasSuffix(name, ".csv"):
			*format = "csv"
		case strings.HasSuffix(name, ".jsonl"), strings.HasSuffix(name, ".ndjson"):
			*format = "jsonl"
		default:
			return fmt.Errorf("-format is required (csv or jsonl)")
		}
	}
	var next func() (importRow, int, error)
	switch *format {
	case "csv":
		var err error
		if next, err = csvRows(in); err != nil {
			return err
		}
	case "jsonl":
		next = jsonlRows(in)
	default:
		return fmt.Errorf("-format must be csv or jsonl, not %q", *format)
	}
	a, err := admin(c)
	if err != nil {
		return err
	}

	type job struct {
		lines []int
		req   *wardenv1.ImportApiKeyRequest
	}
	var (
		imported, existing, refused atomic.Int64
		ephemeral                   atomic.Bool // Warden keeps keys in memory only
		failed                      atomic.Pointer[error]
		mu                          sync.Mutex // stderr
		wg                          sync.WaitGroup
		jobs                        = make(chan job, *workers)
		start                       = time.Now()
	)
	report := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(c.stderr, format, args...)
		mu.Unlock()
	}
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if failed.Load() != nil {
					continue
				}
				cctx, cancel := c.callCtx(ctx)
				resp, err := a.ImportApiKey(cctx, j.req)
				cancel()
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					continue
				}
				if resp.GetEphemeral() {
					ephemeral.Store(true)
				}
				for i, r := range resp.GetResults() {
					switch {
					case r.GetKey() != nil:
						imported.Add(1)
					case r.GetAlreadyExists() && *skipExisting:
						existing.Add(1)
					default:
						refused.Add(1)
						report("line %d: %s\n", j.lines[i], r.GetError())
					}
				}
				n := imported.Load() + existing.Load() + refused.Load()
				if n/100_000 != (n-int64(len(j.lines)))/100_000 {
					report("%d keys done in %v (%.0f/s)\n", n, time.Since(start).Round(time.Second), float64(n)/time.Since(start).Seconds())
				}
			}
		}()
	}
	var readErr error
	cur := job{req: &wardenv1.ImportApiKeyRequest{}}
	for {
		row, line, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		k, err := row.proto()
		if err != nil {
			refused.Add(1)
			report("line %d: %v\n", line, err)
			continue
		}
		cur.req.Keys = append(cur.req.Keys, k)
		cur.lines = append(cur.lines, line)
		if len(cur.lines) == *batch {
			jobs <- cur
			cur = job{req: &wardenv1.ImportApiKeyRequest{}}
		}
		if failed.Load() != nil {
			break
		}
	}
	if len(cur.lines) > 0 && readErr == nil {
		jobs <- cur
	}
	close(jobs)
	wg.Wait()
	fmt.Fprintf(c.stdout, "imported %d keys, %d already stored, %d refused, in %v\n",
		imported.Load(), existing.Load(), refused.Load(), time.Since(start).Round(time.Millisecond))
	if ephemeral.Load() && imported.Load() > 0 {
		fmt.Fprintln(c.stderr, ephemeralWarning)
	}
	switch {
	case failed.Load() != nil:
		return *failed.Load()
	case readErr != nil:
		return readErr
	case refused.Load() > 0:
		return fmt.Errorf("%d keys refused", refused.Load())
	}
	return nil
}

func (r importRow) proto() (*wardenv1.ImportedApiKey, error) {
	if r.Key == "" || r.Owner == "" {
		return nil, errors.New("key and owner are required")
	}
	k := &wardenv1.ImportedApiKey{Key: r.Key, Owner: r.Owner, Tenant: r.Tenant, Roles: r.Roles, Scopes: r.Scopes,
		Tier: r.Tier, Description: r.Description}
	switch r.Environment {
	case "":
	case "live":
		k.Environment = wardenv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_LIVE
	case "test":
		k.Environment = wardenv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_TEST
	default:
		return nil, fmt.Errorf("environment %q: want live or test", r.Environment)
	}
	if r.Expires != "" {
		t, err := time.Parse(time.RFC3339, r.Expires)
		if err != nil {
			return nil, fmt.Errorf("expires %q: want RFC 3339 (2027-01-31T00:00:00Z)", r.Expires)
		}
		k.ExpiresAt = timestamppb.New(t)
	}
	return k, nil
}

// csvRows reads a CSV file whose first row names its columns (importColumns, in any order).
func csvRows(in io.Reader) (func() (importRow, int, error), error) {
	r := csv.NewReader(bufio.NewReaderSize(in, 1<<20))
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		h = strings.ToLower(strings.TrimSpace(h))
		if !contains(importColumns, h) {
			return nil, fmt.Errorf("csv header: unknown column %q (want %s)", h, strings.Join(importColumns, ", "))
		}
		col[h] = i
	}
	if _, ok := col["key"]; !ok {
		return nil, errors.New("csv header: a key column is required")
	}
	line := 1
	return func() (importRow, int, error) {
		rec, err := r.Read()
		line++
		if err != nil {
			if err != io.EOF {
				err = fmt.Errorf("line %d: %w", line, err)
			}
			return importRow{}, line, err
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		list := func(name string) []string {
			return strings.FieldsFunc(get(name), func(r rune) bool { return r == ' ' || r == ',' })
		}
		return importRow{Key: get("key"), Owner: get("owner"), Tenant: get("tenant"), Roles: list("roles"),
			Scopes: list("scopes"), Tier: get("tier"), Expires: get("expires"), Environment: get("environment"),
			Description: get("description")}, line, nil
	}, nil
}

// jsonlRows reads one JSON object per line; blank lines are skipped.
func jsonlRows(in io.Reader) func() (importRow, int, error) {
	s := bufio.NewScanner(in)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	return func() (importRow, int, error) {
		for s.Scan() {
			line++
			b := s.Bytes()
			if len(strings.TrimSpace(string(b))) == 0 {
				continue
			}
			var row importRow
			d := json.NewDecoder(strings.NewReader(string(b)))
			d.DisallowUnknownFields()
			if err := d.Decode(&row); err != nil {
				return importRow{}, line, fmt.Errorf("line %d: %v", line, err)
			}
			return row, line, nil
		}
		if err := s.Err(); err != nil {
			return importRow{}, line, err
		}
		return importRow{}, line, io.EOF
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
