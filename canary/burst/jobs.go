package burst

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
)

// Group is the scheduler group of every burst: two never run at once.
const Group = "burst"

// Jobs returns one scheduler job per profile that has a schedule, in group
// Group. Each run writes its JSON report to bursts.report_dir (if set)
// and returns an error unless the verdict is pass, so that
// slo_canary_scheduled_runs_total counts it as a failure.
func (r *Runner) Jobs() ([]sched.Job, error) {
	bc := r.cfg.Bursts
	var jobs []sched.Job
	for _, name := range slices.Sorted(maps.Keys(bc.Profiles)) {
		p := bc.Profiles[name]
		if p.Schedule == "" {
			continue
		}
		if p.Search.Enabled() {
			_, spec, err := bc.SearchProfile(name)
			if err != nil {
				return nil, err
			}
			jobs = append(jobs, r.SearchJob(name, spec, p.Schedule))
			continue
		}
		_, steps, err := bc.Profile(name)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, sched.Job{Name: "burst_" + name, Group: Group, Spec: p.Schedule, Run: r.jobRun(name, steps)})
	}
	return jobs, nil
}

// Job returns a job running the given steps as profile, for TryRun.
func (r *Runner) Job(profile string, steps []config.Step) sched.Job {
	return sched.Job{Name: "burst_" + profile, Group: Group, Run: r.jobRun(profile, steps)}
}

func (r *Runner) jobRun(profile string, steps []config.Step) func(context.Context) error {
	return func(ctx context.Context) error {
		rep, err := r.Run(ctx, profile, steps)
		if err != nil {
			return err
		}
		if dir := r.cfg.Bursts.ReportDir; dir != "" {
			if err := rep.WriteJSON(rep.ReportPath(dir)); err != nil {
				r.log.Warn("burst report not written", "err", err)
			}
		}
		if rep.Verdict != VerdictPass {
			return fmt.Errorf("burst %s %s: %v", profile, rep.Verdict, rep.Reasons)
		}
		return nil
	}
}

// SearchJob returns a job running a capacity search as profile, in group
// Group, on spec (empty: on demand, for TryRun). A run writes its JSON report
// to bursts.report_dir (if set) and returns an error when the search was
// aborted or found no sustainable rate.
func (r *Runner) SearchJob(profile string, s config.Search, spec string) sched.Job {
	return sched.Job{Name: "capacity_" + profile, Group: Group, Spec: spec, Run: func(ctx context.Context) error {
		rep, err := r.Search(ctx, profile, s)
		if err != nil {
			return err
		}
		if dir := r.cfg.Bursts.ReportDir; dir != "" {
			if err := rep.WriteJSON(rep.ReportPath(dir)); err != nil {
				r.log.Warn("capacity report not written", "err", err)
			}
		}
		if rep.Outcome == OutcomeAborted || rep.Outcome == OutcomeNone {
			return fmt.Errorf("capacity %s %s: %s", profile, rep.Outcome, rep.Summary())
		}
		return nil
	}}
}
