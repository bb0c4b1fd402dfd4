package config

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBurstsExample(t *testing.T) {
	isolateEnv(t)
	c, err := Load("testdata/valid/bursts.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Bursts
	if !b.Enabled || b.MaxRate != 5000 || b.Budgets.LagP95 != 45*time.Second || b.Budgets.LagP50 != 30*time.Second {
		t.Errorf("bursts = %+v", b)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range b.Profiles {
			yield(k)
		}
	}); !slices.Equal(got, []string{"hourly", "nightly", "on_demand"}) {
		t.Fatalf("profiles = %q", got)
	}
	name, steps, err := b.Profile("nightly")
	if err != nil || name != "nightly" {
		t.Fatal(name, err)
	}
	want := []Step{{Rate: 100000.0 / 60, Duration: 5 * time.Minute}, {Rate: 200000.0 / 60, Duration: time.Minute}}
	if !slices.Equal(steps, want) {
		t.Errorf("steps = %+v, want %+v", steps, want)
	}
	if steps[0].Events() != 500000 || steps[1].Events() != 200000 {
		t.Errorf("events = %d, %d", steps[0].Events(), steps[1].Events())
	}
	if c.ConsumerLag.Interval != 15*time.Second || !slices.Equal(c.ConsumerLag.Groups, []string{"capsule-ingest-consumer"}) {
		t.Errorf("consumer_lag = %+v", c.ConsumerLag)
	}
}

// A profile's keys, once the file names the profile, take the environment
// like every other key.
func TestBurstProfileFromEnv(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_BURSTS_PROFILES_NIGHTLY_STEPS", "50/s for 10s,100/s for 5s")
	t.Setenv("SLO_CANARY_BURSTS_PROFILES_NIGHTLY_SCHEDULE", "@every 6h")
	c, err := Load("testdata/valid/bursts.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Bursts.Profiles["nightly"]
	if p.Schedule != "@every 6h" || !slices.Equal(p.Steps, []string{"50/s for 10s", "100/s for 5s"}) {
		t.Errorf("nightly = %+v", p)
	}
}

// A profile named only in the environment is added, as observers and query
// probes are (before, its variables were silently ignored).
func TestBurstProfileEnvOnly(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_BURSTS_PROFILES_WEEKLY_STEPS", "50/s for 10s,100/s for 5s")
	t.Setenv("SLO_CANARY_BURSTS_PROFILES_WEEKLY_SCHEDULE", "0 4 * * 0")
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.Bursts.Profiles["weekly"]
	if !ok || p.Schedule != "0 4 * * 0" || !slices.Equal(p.Steps, []string{"50/s for 10s", "100/s for 5s"}) {
		t.Errorf("profiles = %+v", c.Bursts.Profiles)
	}
	for _, w := range c.Warnings() {
		if strings.Contains(w, "PROFILES") {
			t.Errorf("warning: %s", w)
		}
	}
}

func TestBurstProfileDefault(t *testing.T) {
	b := BurstsDefaults()
	name, steps, err := b.Profile("")
	if err != nil || name != "contract" || len(steps) != 2 || steps[1].Rate != 2*steps[0].Rate {
		t.Fatalf("Profile(\"\") = %q %+v %v", name, steps, err)
	}
	if err := b.CheckSteps("contract", steps); err != nil {
		t.Errorf("the contract's promise does not fit the default caps: %v", err)
	}
	if _, _, err := b.Profile("nope"); err == nil || !strings.Contains(err.Error(), `no burst profile "nope"`) {
		t.Errorf("unknown profile: %v", err)
	}
}

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		err  string
	}{
		{"100000/min", 100000.0 / 60, ""},
		{"1667/s", 1667, ""},
		{" 2_000 / s ", 2000, ""},
		{"60/m", 1, ""},
		{"3600/h", 1, ""},
		{"100000", 0, "want N/s or N/min"},
		{"-5/s", 0, "not a positive number"},
		{"x/s", 0, "not a positive number"},
		{"NaN/s", 0, "not a positive number"},
		{"5/day", 0, `unknown unit "day"`},
	} {
		got, err := ParseRate(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRate(%q) = %v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, r := range []float64{100000.0 / 60, 1667, 0.5, 3334} {
		back, err := ParseRate(FormatRate(r))
		if err != nil || math.Abs(back-r) > 1e-9 {
			t.Errorf("FormatRate(%v) = %q reads back as %v, %v", r, FormatRate(r), back, err)
		}
	}
}

func TestParseStep(t *testing.T) {
	s, err := ParseStep("200000/min for 1m")
	if err != nil || s.Events() != 200000 || s.String() != "200000/min for 1m" {
		t.Errorf("ParseStep = %+v (%s), %v", s, s, err)
	}
	for _, bad := range []string{"100/s", "100/s for", "100/s for 0s", "100/s for 5", "fast for 5m"} {
		if _, err := ParseStep(bad); err == nil {
			t.Errorf("ParseStep(%q) succeeded", bad)
		}
	}
}

func TestParseSeverities(t *testing.T) {
	got, err := ParseSeverities([]string{"INFO=70", " WARN = 5"})
	if err != nil || !slices.Equal(got, []Severity{{"INFO", 70}, {"WARN", 5}}) {
		t.Errorf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"INFO", "INFO=0", "INFO=x", "info=1"} {
		if _, err := ParseSeverities([]string{bad}); err == nil {
			t.Errorf("ParseSeverities(%q) succeeded", bad)
		}
	}
}

// TestConsumerLagDefaults: the default groups are the contract's two, not
// also the performance README's other name for the second: a group that
// does not exist is reported down, so the defaults would raise an alert on
// every healthy install.
func TestConsumerLagDefaults(t *testing.T) {
	if g := ConsumerLagDefaults().Groups; !slices.Equal(g, []string{"fingerprinting-job", "capsule-consumer"}) {
		t.Errorf("default groups %q", g)
	}
}

// TestBurstSearchExample: a profile's search parses with its defaults, the
// contract rate is read, and a search profile is not a burst's.
func TestBurstSearchExample(t *testing.T) {
	isolateEnv(t)
	c, err := Load("testdata/valid/capacity.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Bursts
	if got := b.Contract(); got != 1500 {
		t.Errorf("contract rate %v/s, want 1500", got)
	}
	if got := BurstsDefaults().Contract(); math.Abs(got-100000.0/60) > 1e-9 {
		t.Errorf("default contract rate %v/s, want 100000/min", got)
	}
	name, s, err := b.SearchProfile("")
	want := Search{Start: 1000, Max: 5000, StepDuration: 2 * time.Minute, Precision: 0.05,
		Timeout: DefaultSearchTimeout, BacklogTolerance: DefaultSearchBacklogTolerance, LagGrowth: DefaultSearchLagGrowth}
	if err != nil || name != "capacity" || s != want {
		t.Errorf("SearchProfile(\"\") = %q %+v %v, want capacity %+v", name, s, err, want)
	}
	if _, _, err := b.Profile("capacity"); err == nil || !strings.Contains(err.Error(), "capacity search") {
		t.Errorf("Profile(capacity): %v, want an error saying it is a search", err)
	}
	if _, _, err := b.SearchProfile("nightly"); err == nil || !strings.Contains(err.Error(), "has no search") {
		t.Errorf("SearchProfile(nightly): %v", err)
	}
	// Start defaults to a sixteenth of max.
	s, err = BurstSearch{Max: "16000/s"}.Parse("x")
	if err != nil || s.Start != 1000 || s.StepDuration != DefaultSearchStepDuration || s.Precision != DefaultSearchPrecision {
		t.Errorf("defaults: %+v %v", s, err)
	}
	if err := BurstsDefaults().CheckSearch("x", Search{Start: 1, Max: 20000, StepDuration: time.Second, Precision: 0.1, Timeout: time.Hour, BacklogTolerance: 0.05, LagGrowth: 0.02}); err == nil {
		t.Error("a search above the default max_rate passed CheckSearch")
	}
}

func TestBurstSearchFromEnv(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_BURSTS_PROFILES_WEEKLY_SEARCH_MAX", "8000/s")
	t.Setenv("SLO_CANARY_BURSTS_PROFILES_WEEKLY_SEARCH_STEP_DURATION", "30s")
	t.Setenv("SLO_CANARY_BURSTS_CONTRACT_RATE", "2000/s")
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	name, s, err := c.Bursts.SearchProfile("")
	if err != nil || name != "weekly" || s.Max != 8000 || s.Start != 500 || s.StepDuration != 30*time.Second || c.Bursts.Contract() != 2000 {
		t.Errorf("SearchProfile = %q %+v %v; contract %v", name, s, err, c.Bursts.Contract())
	}
}
