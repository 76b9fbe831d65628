package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// clockTicks is the unit of /proc times (sysconf(_SC_CLK_TCK)); 100 on every Linux we run.
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100
}()

// processTicks is utime + stime of pid (all its threads), in clock ticks.
func processTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return utime + stime, nil
}

// cpuTimes is one line of /proc/stat, in clock ticks.
type cpuTimes struct {
	busy  uint64 // user nice system irq softirq (guest is inside user)
	steal uint64
	total uint64 // busy + idle + iowait + steal
}

// cpuStat reads the aggregate line ("cpu") and the per-CPU lines ("cpu0", …) of /proc/stat.
func cpuStat() (map[string]cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	m := map[string]cpuTimes{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		var v [8]uint64 // user nice system idle iowait irq softirq steal
		for i := range v {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		t := cpuTimes{busy: v[0] + v[1] + v[2] + v[5] + v[6], steal: v[7]}
		t.total = t.busy + v[3] + v[4] + t.steal
		m[f[0]] = t
	}
	return m, nil
}

// sample is what is read before and after one measured load.
type sample struct {
	procTicks  uint64 // Warden + Redis
	redisTicks uint64 // Redis alone (every pid after the first)
	cpus       map[string]cpuTimes
}

func takeSample(pids []int) (sample, error) {
	var s sample
	for i, pid := range pids {
		t, err := processTicks(pid)
		if err != nil {
			return s, err
		}
		s.procTicks += t
		if i > 0 {
			s.redisTicks += t
		}
	}
	var err error
	s.cpus, err = cpuStat()
	return s, err
}

// usage is the difference of two samples.
type usage struct {
	cpuSeconds   float64 // Warden + Redis
	redisSeconds float64 // Redis's share of cpuSeconds
	stealPct     float64 // steal share of all CPUs' time
	otherPct     float64 // share of serverCPU busy with anything but Warden and Redis
}

func diff(before, after sample, serverCPU string) usage {
	u := usage{cpuSeconds: float64(after.procTicks-before.procTicks) / clockTicks,
		redisSeconds: float64(after.redisTicks-before.redisTicks) / clockTicks}
	if a, b := after.cpus["cpu"], before.cpus["cpu"]; a.total > b.total {
		u.stealPct = 100 * float64(a.steal-b.steal) / float64(a.total-b.total)
	}
	if a, b := after.cpus[serverCPU], before.cpus[serverCPU]; a.total > b.total {
		other := float64(a.busy-b.busy) - float64(after.procTicks-before.procTicks)
		u.otherPct = max(0, 100*other/float64(a.total-b.total))
	}
	return u
}
