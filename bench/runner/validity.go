package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// A Redis row measures Warden deciding on Redis only if Warden did: with a store that timed
// out or a circuit breaker that opened, Warden answers from its failure policy (fail_open:
// allowed, uncounted) at a fraction of the cost, and the row's figures would measure that.
// So around every measured load of a Redis row the runner reads Warden's own counters (its
// /metrics on the admin port: decisions by source, and the Takes and script calls its Redis
// store sent) and Redis's script calls (INFO commandstats), and the row is INVALID, printed
// with the reason instead of its figures, unless:
//
//   - no decision was taken with source fail_open or fallback (Warden did not ask Redis);
//   - some decisions were taken by the store;
//   - when Warden exports them (warden_redis_pipeline_commands and _scripts), its store sent
//     at least one Take per store decision, and Redis ran at least the script calls that
//     carried them: every store decision was a Take that Redis ran;
//   - Redis ran at least one script call per -decisions-per-script store decisions. The
//     Redis store carries up to 64 Takes (decisions) in one script call, so decisions per
//     script call are above 1 under load; the report prints the measured ratio.

// decisionsMetric is the Prometheus name of limiter's warden.ratelimit.decisions counter
// (limiter/metrics.go), labelled domain, decision and source.
const decisionsMetric = "warden_ratelimit_decisions_total"

// counters are a Redis setup's decision and script counts at one instant.
type counters struct {
	// decisions sums warden_ratelimit_decisions_total by its source label (store, cache,
	// fallback, fail_open).
	decisions map[string]float64
	// leaseAllowed is the allowed decisions of leaseDomain, every source.
	leaseAllowed float64
	// scripts is Redis's EVALSHA and EVAL calls since it started.
	scripts uint64
	// sentTakes and sentScripts are the Takes and the script calls Warden's Redis store sent
	// (the sums of warden_redis_pipeline_commands and warden_redis_pipeline_scripts); hasSent
	// is false for a Warden that exports no scripts histogram (before several Takes per call).
	sentTakes, sentScripts float64
	hasSent                bool
	// roundTrips and holds are the store's round trips (warden_redis_pipeline_commands_count)
	// and those whose batch its collector held for more Takes (warden_redis_batch_holds_total);
	// hasHolds is false for a Warden that exports no holds.
	roundTrips, holds float64
	hasHolds          bool
}

// validity is what a Redis row's check found over one load.
type validity struct {
	store, failOpen, fallback float64 // decisions by source during the load
	lease                     float64 // decisions from a leased slice during the load (Scenario.Leased)
	debited, admitted         float64 // leaseDomain's units debited in Redis and decisions admitted, since Warden started
	total                     float64 // decisions of every source during the load
	scripts                   uint64  // script calls Redis ran during the load
	hasSent                   bool    // Warden exports sentTakes and sentScripts
	sentTakes, sentScripts    float64 // Takes and script calls Warden's store sent
	hasHolds                  bool    // Warden exports roundTrips and holds
	roundTrips, holds         float64 // the store's round trips, and those whose batch was held
	invalid                   string  // "" when valid, else why the row is not a figure

	// Rows checked by their Redis commands alone (Scenario.Counted): the calls answered
	// OK, and the counted commands Redis ran during the load.
	calls, counted uint64
	countedNames   []string
}

// readCounters scrapes Warden's /metrics and Redis's INFO commandstats.
func (s *setup) readCounters(ctx context.Context) (counters, error) {
	var c counters
	if s.adminAddr == "" || s.redisAddr == "" {
		return c, fmt.Errorf("no admin address or no Redis to read counters from")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.adminAddr+"/metrics", nil)
	if err != nil {
		return c, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, fmt.Errorf("warden /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("warden /metrics: %s", resp.Status)
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return c, fmt.Errorf("warden /metrics: %w", err)
	}
	c.decisions, c.leaseAllowed, c.sentTakes, c.sentScripts, c.hasSent = m.bySource, m.leaseAllowed, m.takes, m.scripts, m.hasSent
	c.roundTrips, c.holds, c.hasHolds = m.roundTrips, m.holds, m.hasHolds
	info, err := redisCommand(s.redisAddr, "INFO commandstats")
	if err != nil {
		return c, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	if c.scripts, err = parseScriptCalls(info); err != nil {
		return c, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	return c, nil
}

// Prometheus names of the Redis store's histograms of Takes and script calls per round trip
// (cmd/warden/redismetrics.go): their sums count what the store sent.
const (
	sentTakesMetric   = "warden_redis_pipeline_commands_sum"
	sentScriptsMetric = "warden_redis_pipeline_scripts_sum"
	roundTripsMetric  = "warden_redis_pipeline_commands_count"
	holdsMetric       = "warden_redis_batch_holds_total"
)

// parseDecisions sums the decisions counter of a Prometheus text exposition by source, and
// returns the allowed decisions of leaseDomain apart.
func parseDecisions(r io.Reader) (map[string]float64, float64, error) {
	m, err := parseMetrics(r)
	return m.bySource, m.leaseAllowed, err
}

// metrics is what parseMetrics reads.
type metrics struct {
	bySource                     map[string]float64
	leaseAllowed, takes, scripts float64
	roundTrips, holds            float64
	hasSent, hasHolds            bool
}

// parseMetrics sums the decisions counter of a Prometheus text exposition by source, returns
// the allowed decisions of leaseDomain apart, and reads the Takes and the script calls the
// Redis store sent (hasSent: the scripts' sum is exported), its round trips and its holds
// (hasHolds: the holds are exported).
func parseMetrics(r io.Reader) (metrics, error) {
	m := metrics{bySource: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, s := range [...]struct {
			name string
			to   *float64
		}{{sentTakesMetric, &m.takes}, {sentScriptsMetric, &m.scripts}, {roundTripsMetric, &m.roundTrips}, {holdsMetric, &m.holds}} {
			if strings.HasPrefix(line, s.name+"{") || strings.HasPrefix(line, s.name+" ") {
				v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				if err != nil {
					return m, fmt.Errorf("cannot parse %q: %w", line, err)
				}
				*s.to += v
				m.hasSent = m.hasSent || s.name == sentScriptsMetric
				m.hasHolds = m.hasHolds || s.name == holdsMetric
			}
		}
		rest, ok := strings.CutPrefix(line, decisionsMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return m, fmt.Errorf("cannot parse %q", line)
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return m, fmt.Errorf("cannot parse %q: %w", line, err)
		}
		source, domain, decision := "", "", ""
		for _, kv := range strings.Split(labels, ",") {
			if k, val, ok := strings.Cut(kv, "="); ok {
				switch val = strings.Trim(val, `"`); k {
				case "source":
					source = val
				case "domain":
					domain = val
				case "decision":
					decision = val
				}
			}
		}
		if source == "" {
			return m, fmt.Errorf("no source label in %q", line)
		}
		m.bySource[source] += v
		if domain == leaseDomain && decision == "allowed" {
			m.leaseAllowed += v
		}
	}
	return m, sc.Err()
}

// parseScriptCalls adds the calls of cmdstat_evalsha and cmdstat_eval in INFO commandstats.
func parseScriptCalls(info string) (uint64, error) {
	m, err := parseCommandCalls(info)
	return m["evalsha"] + m["eval"], err
}

// parseCommandCalls returns the calls of every command in INFO commandstats, by its
// lower-case name ("cmdstat_incrby:calls=3,…" is incrby: 3).
func parseCommandCalls(info string) (map[string]uint64, error) {
	m := map[string]uint64{}
	for _, line := range strings.Split(info, "\n") {
		name, fields, ok := strings.Cut(strings.TrimSpace(line), ":")
		cmd, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		for _, kv := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				calls, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("cannot parse %q", line)
				}
				m[strings.ToLower(cmd)] += calls
			}
		}
	}
	return m, nil
}

// commandCalls reads the calls per command of st's Redis.
func (s *setup) commandCalls() (map[string]uint64, error) {
	if s.redisAddr == "" {
		return nil, fmt.Errorf("no Redis to read commandstats from")
	}
	info, err := redisCommand(s.redisAddr, "INFO commandstats")
	if err != nil {
		return nil, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	return parseCommandCalls(info)
}

// checkCounted is the check of a Redis row served by something other than Warden (the Redis
// floors, envoyproxy/ratelimit), which has no decision counters to read: each call answered
// OK carries one descriptor, so it is a decision, and Redis must have run at least one of the
// counted commands (an EVALSHA, an INCRBY) for each. A server that answered without Redis
// (a local cache, a fail-open path) ran fewer.
func checkCounted(before, after map[string]uint64, counted []string, calls uint64) validity {
	v := validity{calls: calls, countedNames: counted}
	for _, c := range counted {
		if after[c] >= before[c] {
			v.counted += after[c] - before[c]
		}
	}
	switch {
	case calls == 0:
		v.invalid = "no call answered OK during the load"
	case v.counted < calls:
		v.invalid = fmt.Sprintf("Redis ran %d %s for %d decisions answered OK, fewer than one per decision",
			v.counted, strings.ToUpper(strings.Join(counted, "+")), calls)
	}
	return v
}

// checkCountedLoad runs load between two readings of st's Redis commandstats and checks
// them against the calls answered OK (read after the load).
func checkCountedLoad(st *setup, counted []string, load func() error, calls func() uint64) (validity, error) {
	before, err := st.commandCalls()
	if err != nil {
		return validity{invalid: "cannot read the counters before the load: " + err.Error()}, load()
	}
	if err := load(); err != nil {
		return validity{}, err
	}
	after, err := st.commandCalls()
	if err != nil {
		return validity{invalid: "cannot read the counters after the load: " + err.Error()}, nil
	}
	return checkCounted(before, after, counted, calls()), nil
}

// redisCommand sends one inline command and returns its reply (a status, an integer or a bulk
// string) as text.
func redisCommand(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("%s", line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	}
	return line[1:], nil
}

// noStoreDecision is check's verdict on a load that no store decision took part in (the
// checks after it are then vacuous: no Take was sent).
const noStoreDecision = "no decision taken by the store during the load"

// check compares the counters read before and after a load. perScript is the most store
// decisions one script call may take.
func check(before, after counters, perScript int) validity {
	d := func(source string) float64 { return after.decisions[source] - before.decisions[source] }
	v := validity{store: d("store"), failOpen: d("fail_open"), fallback: d("fallback")}
	for source := range after.decisions {
		v.total += d(source)
	}
	if after.scripts >= before.scripts {
		v.scripts = after.scripts - before.scripts
	}
	if v.hasSent = before.hasSent && after.hasSent; v.hasSent {
		v.sentTakes, v.sentScripts = after.sentTakes-before.sentTakes, after.sentScripts-before.sentScripts
	}
	if v.hasHolds = before.hasHolds && after.hasHolds; v.hasHolds {
		v.roundTrips, v.holds = after.roundTrips-before.roundTrips, after.holds-before.holds
	}
	switch {
	case v.failOpen > 0 || v.fallback > 0:
		v.invalid = fmt.Sprintf("%.0f of %.0f decisions fail_open and %.0f fallback during the load: Warden answered without Redis", v.failOpen, v.total, v.fallback)
	case v.store <= 0:
		v.invalid = noStoreDecision
	case v.hasSent && v.sentTakes < v.store:
		v.invalid = fmt.Sprintf("Warden's store sent %.0f Takes for %.0f store decisions", v.sentTakes, v.store)
	case v.hasSent && float64(v.scripts) < v.sentScripts:
		v.invalid = fmt.Sprintf("Redis ran %d script calls, fewer than the %.0f Warden's store sent", v.scripts, v.sentScripts)
	case float64(v.scripts)*float64(perScript) < v.store:
		v.invalid = fmt.Sprintf("Redis ran %d script calls for %.0f store decisions, fewer than one per %d", v.scripts, v.store, perScript)
	}
	return v
}

// checkLoad runs load between two readings of st's counters and returns the verdict;
// unreadable counters make the row invalid too.
func checkLoad(ctx context.Context, st *setup, perScript int, load func() error) (validity, error) {
	before, after, invalid, err := countedLoad(ctx, st, load)
	if invalid != "" || err != nil {
		return validity{invalid: invalid}, err
	}
	return check(before, after, perScript), nil
}

// countedLoad runs load between two readings of st's counters; invalid says which reading
// failed (the load still runs when the first one did).
func countedLoad(ctx context.Context, st *setup, load func() error) (before, after counters, invalid string, err error) {
	if before, err = st.readCounters(ctx); err != nil {
		return before, after, "cannot read the counters before the load: " + err.Error(), load()
	}
	if err = load(); err != nil {
		return before, after, "", err
	}
	if after, err = st.readCounters(ctx); err != nil {
		return before, after, "cannot read the counters after the load: " + err.Error(), nil
	}
	return before, after, "", nil
}

// leaseDomain is the bench config's domain with a leased limit (fixtures.go): a fixed window
// of 4e9 units in 87600h, so that no window ends during a run and a peek's remaining tells
// how many units Redis has debited.
const leaseDomain = "benchlease"

// checkLeasedLoad is checkLoad for a leased row (Scenario.Leased). Decisions may come from
// the store or from a lease, from no other source; and Redis must have debited at least as
// many units as Warden admitted: after the load, each of the row's counters is peeked (a
// CheckRateLimit of cost 0, which the store answers: a lease never covers a peek), its
// debited units are its limit less its remaining, and their sum must reach the allowed
// decisions of leaseDomain since Warden started, less the peeks (allowed, debiting nothing).
// Both are counted since the start, because units debited into a slice during one load are
// admitted during the next.
func checkLeasedLoad(ctx context.Context, st *setup, cc *grpc.ClientConn, perScript int, load func() error) (validity, error) {
	before, after, invalid, err := countedLoad(ctx, st, load)
	if invalid != "" || err != nil {
		return validity{invalid: invalid}, err
	}
	v := check(before, after, perScript)
	v.lease = after.decisions["lease"] - before.decisions["lease"]
	if v.invalid == noStoreDecision && v.lease > 0 {
		// Every decision of the load came from slices leased before it (a short load): the
		// debited units below still prove each was counted by the store.
		v.invalid = ""
	}
	if v.invalid != "" {
		return v, nil
	}
	for source := range after.decisions {
		if d := after.decisions[source] - before.decisions[source]; source != "store" && source != "lease" && d > 0 {
			v.invalid = fmt.Sprintf("%.0f decisions with source %s during the load: want store and lease only", d, source)
			return v, nil
		}
	}
	debited, err := peekDebited(ctx, cc)
	if err != nil {
		v.invalid = "cannot peek the leased counters: " + err.Error()
		return v, nil
	}
	v.debited, v.admitted = debited, after.leaseAllowed-float64(st.leasePeeks)
	st.leasePeeks += requests
	if v.debited < v.admitted {
		v.invalid = fmt.Sprintf("Redis debited %.0f units for %.0f admitted decisions", v.debited, v.admitted)
	}
	return v, nil
}

// peekDebited sums the units Redis has debited from leaseDomain's counters of the row's
// requests.
func peekDebited(ctx context.Context, cc *grpc.ClientConn) (float64, error) {
	c := wardenv1.NewWardenServiceClient(cc)
	var sum float64
	for i := range requests {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.CheckRateLimit(ctx, &wardenv1.CheckRateLimitRequest{Domain: leaseDomain, Cost: proto.Int64(0),
			Descriptors: []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: user(i)}}}}})
		cancel()
		if err != nil {
			return 0, err
		}
		if len(resp.GetStatuses()) != 1 {
			return 0, fmt.Errorf("peek %d: got %v, want one status", i, resp)
		}
		s := resp.GetStatuses()[0]
		sum += float64(s.GetLimit() - s.GetRemaining())
	}
	return sum, nil
}

// heldSummary is "; …" saying how many of the store's round trips were held, when Warden
// exports its holds in every load of vs.
func heldSummary(vs []validity) string {
	var trips, holds, takes float64
	for _, v := range vs {
		if !v.hasHolds {
			return ""
		}
		trips, holds, takes = trips+v.roundTrips, holds+v.holds, takes+v.sentTakes
	}
	if trips <= 0 {
		return ""
	}
	return fmt.Sprintf("; %.0f round trips, %.2f Takes each, %.0f held for more Takes (%.1f%%)", trips, takes/trips, holds, 100*holds/trips)
}

// summary is a row's validity over all its loads and rounds, for the report.
func validitySummary(vs []validity) string {
	var store, scripts, sentTakes, sentScripts, lease float64
	var last validity
	var calls, counted uint64
	var names []string
	hasSent := len(vs) > 0
	for _, v := range vs {
		if v.invalid != "" {
			return "INVALID: " + v.invalid
		}
		store += v.store
		scripts += float64(v.scripts)
		sentTakes += v.sentTakes
		sentScripts += v.sentScripts
		hasSent = hasSent && v.hasSent
		lease += v.lease
		last = v
		calls += v.calls
		counted += v.counted
		names = v.countedNames
	}
	if names != nil {
		return fmt.Sprintf("valid: %d decisions answered OK (one descriptor each); Redis ran %d %s (%.2f per decision)",
			calls, counted, strings.ToUpper(strings.Join(names, "+")), float64(counted)/float64(max(calls, 1)))
	}
	per := math.NaN()
	if scripts > 0 {
		per = store / scripts
	}
	sent := "Warden exports no count of the Takes and script calls it sent"
	if hasSent {
		sent = fmt.Sprintf("Warden's store sent %.0f Takes in %.0f script calls", sentTakes, sentScripts)
	}
	if lease > 0 {
		return fmt.Sprintf("valid: %.0f decisions by the store and %.0f from a lease (%.1f%%), no other source; %s; Redis ran %.0f script calls (%.2f store decisions per call); Redis debited %.0f units for %.0f admitted since start",
			store, lease, 100*lease/(store+lease), sent, scripts, per, last.debited, last.admitted)
	}
	return fmt.Sprintf("valid: %.0f decisions by the store, 0 fail_open or fallback; %s; Redis ran %.0f script calls: %.2f decisions per script call%s", store, sent, scripts, per, heldSummary(vs))
}
