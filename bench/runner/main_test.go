package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestPlanMeasuresEachFloorOnEachProcess(t *testing.T) {
	saved := scenarios
	t.Cleanup(func() { scenarios = saved })
	floor := scenarios[0]
	scenarios = []Scenario{
		floor,
		{Name: "mem", Floor: floor.Name, Method: "m/M", Request: floor.Request},
		{Name: "redis", Floor: floor.Name, Method: "m/M", Request: floor.Request, Redis: true},
		{Name: "redis 2", Floor: floor.Name, Method: "m/M", Request: floor.Request, Redis: true},
	}
	rows, setups, err := plan(regexp.MustCompile(""), false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.label+" <- "+r.floor.label)
	}
	want := []string{
		floor.Name + " <- " + floor.Name,
		"mem <- " + floor.Name,
		floor.Name + " @ redis <- " + floor.Name + " @ redis",
		"redis <- " + floor.Name + " @ redis",
		"redis 2 <- " + floor.Name + " @ redis",
	}
	if len(got) != len(want) {
		t.Fatalf("rows: got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: got %q, want %q", i, got[i], want[i])
		}
	}
	if len(setups) != 2 {
		t.Errorf("setups: got %d, want 2", len(setups))
	}

	// A filter keeps the floors a selected row needs.
	rows, _, err = plan(regexp.MustCompile("^redis 2$"), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].floor != rows[0] || rows[1].floor != rows[0] || rows[0].st != rows[1].st {
		t.Errorf("filtered: got %d rows; want the floor on the Redis process, then the row", len(rows))
	}
}

func TestPlanRejectsUnknownFloor(t *testing.T) {
	saved := scenarios
	t.Cleanup(func() { scenarios = saved })
	scenarios = []Scenario{{Name: "x", Floor: "nope", Method: "m/M", Request: saved[0].Request}}
	if _, _, err := plan(regexp.MustCompile(""), false); err == nil {
		t.Error("got no error for a floor that does not exist")
	}
}

func TestProcReaders(t *testing.T) {
	if _, err := processTicks(os.Getpid()); err != nil {
		t.Error(err)
	}
	m, err := cpuStat()
	if err != nil {
		t.Fatal(err)
	}
	if m["cpu"].total == 0 {
		t.Errorf("/proc/stat: got no aggregate cpu line in %v", m)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v): got %v, want %v", c.in, got, c.want)
		}
	}
}

// The figures are the shipped binary's only if Warden and the floor are built as the image
// builds it: build.sh's go build command has every one of buildFlags.
func TestBuildFlagsAreTheImages(t *testing.T) {
	b, err := os.ReadFile("../../deploy/image/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	var build string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "go build") && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			build = strings.ReplaceAll(line, "'", "")
		}
	}
	if build == "" {
		t.Fatal("deploy/image/build.sh: no go build command")
	}
	for i := 0; i < len(buildFlags); i++ {
		flag := buildFlags[i]
		if strings.HasPrefix(flag, "-") && !strings.Contains(flag, "=") && i+1 < len(buildFlags) && !strings.HasPrefix(buildFlags[i+1], "-") {
			flag += " " + buildFlags[i+1]
			i++
		}
		if !strings.Contains(build, " "+flag+" ") {
			t.Errorf("deploy/image/build.sh builds with %q: it lacks %q", strings.TrimSpace(build), flag)
		}
	}
}
