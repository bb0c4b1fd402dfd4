package deploy

import (
	"fmt"
	"time"
)

// The alerts beside the SLO burn rates: what goes wrong in the pipeline
// (loss, silent stages, consumer groups, bursts, concurrency runs, vector
// search, capacity headroom) and with the canary itself. All open tickets;
// windows and `for` clauses go through p.d so the time scale applies.

func (p Params) pipelineAlerts() []Rule {
	return []Rule{
		{
			Alert: "SLOScoutMarkersLost",
			// A marker declared lost and seen within the late window is late,
			// not lost: net loss is lost minus late, judged only once it has
			// lasted as long as the late window.
			Expr: fmt.Sprintf(`sum by (namespace, job, stage) (increase(slo_canary_markers_lost_total[%[1]s]))
-
sum by (namespace, job, stage) (increase(slo_canary_markers_late_total[%[1]s]))
> 0`, p.d(time.Hour)),
			For:    p.d(p.LateWindow),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutMarkersLost",
				"SLO-Scout lost canary markers at stage {{ $labels.stage }}",
				fmt.Sprintf("{{ $value | humanize }} markers sent in the last %s never reached stage {{ $labels.stage }}, not even late: events are being dropped between Kafka and that stage.", p.d(time.Hour))),
		},
		{
			Alert: "SLOScoutStageSilent",
			Expr: fmt.Sprintf(`sum by (namespace, job, stage) (increase(slo_canary_markers_lost_total[%[1]s])) > 0
unless on (namespace, job, stage)
sum by (namespace, job, stage) (increase(slo_canary_markers_observed_total[%[1]s])) > 0`, p.d(15*time.Minute)),
			For:    p.d(5 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutStageSilent",
				"No canary markers reach stage {{ $labels.stage }}",
				fmt.Sprintf("Stage {{ $labels.stage }} saw none of the canary's markers in the last %s while {{ $value | humanize }} passed their deadline there: the stage receives nothing, or the canary cannot see it.", p.d(15*time.Minute))),
		},
		{
			Alert: "SLOScoutConsumerGroupLagHigh",
			// Judged against the canary's own freshness budget: an event
			// waiting longer than it in Kafka is already late.
			Expr: `max by (namespace, job, group, topic) (slo_canary_consumer_group_lag_seconds)
> on (namespace, job) group_left ()
max by (namespace, job) (slo_canary_freshness_budget_seconds)`,
			For:    p.d(10 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutConsumerGroupLagHigh",
				"Consumer group {{ $labels.group }} is {{ $value | humanizeDuration }} behind on {{ $labels.topic }}",
				fmt.Sprintf("The oldest record consumer group {{ $labels.group }} has not committed on topic {{ $labels.topic }} is {{ $value | humanizeDuration }} old, longer than the freshness budget, for %s: the stream job is slow or stopped.", p.d(10*time.Minute))),
		},
		{
			Alert:  "SLOScoutConsumerGroupDown",
			Expr:   `max by (namespace, job, group) (slo_canary_consumer_group_up) == 0`,
			For:    p.d(15 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutConsumerGroupDown",
				"Consumer group {{ $labels.group }} has no committed offsets",
				fmt.Sprintf("For %s consumer group {{ $labels.group }} has not existed, committed nothing, or could not be read (up is {{ $value }}): the stream job behind it is not consuming, or consumer_lag.groups names a group that does not exist.", p.d(15*time.Minute))),
		},
		{
			Alert: "SLOScoutBurstFailed",
			// A failure is news for a day, or until a later burst of the
			// profile passes. Aborted bursts (a guard tripped) are not
			// failures: the pipeline was already unwell, and other alerts say so.
			Expr: fmt.Sprintf(`sum by (namespace, job, profile) (increase(slo_canary_bursts_total{verdict="fail"}[%s])) > 0
unless on (namespace, job, profile)
%s == 1`, p.d(24*time.Hour), latestVerdict("slo_canary_burst_last_verdict", "slo_canary_burst_last_timestamp_seconds", "profile")),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutBurstFailed",
				"Burst profile {{ $labels.profile }} failed its budgets",
				fmt.Sprintf("{{ $value | humanize }} burst(s) of profile {{ $labels.profile }} in the last %s missed a lag, loss or rate budget: SLO-Scout does not sustain the promised throughput. See slo_canary_burst_last_* and the burst report.", p.d(24*time.Hour))),
		},
		{
			Alert: "SLOScoutConcurrencyRunFailed",
			Expr: fmt.Sprintf(`sum by (namespace, job, run) (increase(slo_canary_concurrency_runs_total{verdict="fail"}[%s])) > 0
unless on (namespace, job, run)
%s == 1`, p.d(24*time.Hour), latestVerdict("slo_canary_concurrency_last_verdict", "slo_canary_concurrency_last_run_timestamp_seconds", "run")),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutConcurrencyRunFailed",
				"Concurrency run {{ $labels.run }} failed its budgets",
				fmt.Sprintf("{{ $value | humanize }} concurrency run(s) {{ $labels.run }} in the last %s missed a latency or success-ratio budget: SLO-Scout's API does not hold up under the promised concurrency.", p.d(24*time.Hour))),
		},
		{
			Alert: "SLOScoutEvidenceOverheadHigh",
			Expr: `max by (namespace, job) (slo_canary_evidence_overhead_seconds{percentile="0.95"})
> on (namespace, job)
max by (namespace, job) (slo_canary_evidence_overhead_budget_seconds)`,
			For:    p.d(30 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutEvidenceOverheadHigh",
				"Vector-search (evidence) overhead is over budget",
				fmt.Sprintf("Queries with evidence take {{ $value | humanizeDuration }} longer than without at the 95th percentile, over the budget (slo_canary_evidence_overhead_budget_seconds), for %s: vector search is slow.", p.d(30*time.Minute))),
		},
		{
			Alert: "SLOScoutCapacityHeadroomLow",
			// The gauges start at zero and survive only in memory: judged
			// once the canary has finished a search that gave a figure
			// (aborted ones leave the last figure, and count for nothing).
			Expr: fmt.Sprintf(`max by (namespace, job, profile) (slo_canary_capacity_headroom_ratio) < %s
and on (namespace, job, profile)
sum by (namespace, job, profile) (slo_canary_capacity_searches_total{outcome!="aborted"}) > 0`, formatFloat(p.MinCapacityHeadroom)),
			For:    p.d(5 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutCapacityHeadroomLow",
				"Capacity search {{ $labels.profile }}: headroom {{ $value | humanize }}x the contract rate",
				fmt.Sprintf("The latest capacity search of profile {{ $labels.profile }} found the pipeline sustains only {{ $value | humanize }} times bursts.contract_rate, below %sx: a burst at the promised %sx would break the ingest SLOs. See slo_canary_capacity_* and the search's report.", formatFloat(p.MinCapacityHeadroom), formatFloat(p.MinCapacityHeadroom))),
		},
		{
			Alert: "SLOScoutCapacityHeadroomDropped",
			// previous is 0 until two searches have given a figure: the
			// ratio is then +Inf or NaN, and does not fire.
			Expr: fmt.Sprintf(`max by (namespace, job, profile) (slo_canary_capacity_sustainable_events_per_second)
/
max by (namespace, job, profile) (slo_canary_capacity_previous_sustainable_events_per_second)
< %s`, formatFloat(1-p.MaxCapacityDrop)),
			For:    p.d(5 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOScoutCapacityHeadroomDropped",
				"Capacity search {{ $labels.profile }}: sustainable rate fell to {{ $value | humanizePercentage }} of the previous search's",
				fmt.Sprintf("The latest capacity search of profile {{ $labels.profile }} sustained {{ $value | humanizePercentage }} of the rate the search before it did, a drop of more than %s: a change since then (a release, a config, the cluster) cost headroom. Compare the two searches' reports.", formatPercent(p.MaxCapacityDrop))),
		},
	}
}

func (p Params) healthAlerts() []Rule {
	up := fmt.Sprintf("up{job=%q}", p.CanaryJob)
	return []Rule{
		{
			Alert:  "SLOCanaryDown",
			Expr:   up + " == 0",
			For:    p.d(5 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryDown",
				"slo-canary {{ $labels.instance }} cannot be scraped",
				fmt.Sprintf("Prometheus has failed to scrape slo-canary at {{ $labels.instance }} for %s (up is {{ $value }}): SLO-Scout's SLOs are not being measured.", p.d(5*time.Minute))),
		},
		{
			Alert:  "SLOCanaryAbsent",
			Expr:   "absent(" + up + ")",
			For:    p.d(15 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryAbsent",
				fmt.Sprintf("No slo-canary target (job %s) is being scraped", p.CanaryJob),
				fmt.Sprintf("Prometheus has had no scrape target with job %q for %s (absent is {{ $value }}): the canary is not deployed, or its ServiceMonitor does not select it. No SLO alert can fire.", p.CanaryJob, p.d(15*time.Minute))),
		},
		{
			Alert: "SLOCanaryProduceFailures",
			Expr: fmt.Sprintf(`sum by (namespace, job) (rate(slo_canary_produce_failures_total[%[1]s]))
/
(
  sum by (namespace, job) (rate(slo_canary_produce_failures_total[%[1]s]))
  +
  sum by (namespace, job) (rate(slo_canary_markers_sent_total[%[1]s]))
)
> %[2]s`, p.d(5*time.Minute), formatFloat(p.ProduceFailureRatio)),
			For:    p.d(10 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryProduceFailures",
				"slo-canary fails to produce markers to Kafka",
				fmt.Sprintf("{{ $value | humanizePercentage }} of marker produces failed over %s (tolerated: %s). The collectors share this Kafka path; see slo_canary_produce_failures_total by reason.", p.d(5*time.Minute), formatPercent(p.ProduceFailureRatio))),
		},
		{
			Alert: "SLOCanaryObserverErrors",
			Expr: fmt.Sprintf(`sum by (namespace, job, stage) (rate(slo_canary_observer_errors_total[%[1]s]))
/
sum by (namespace, job, stage) (rate(slo_canary_observer_polls_total[%[1]s]))
> %[2]s`, p.d(5*time.Minute), formatFloat(p.ObserverErrorRatio)),
			For:    p.d(10 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryObserverErrors",
				"slo-canary cannot observe stage {{ $labels.stage }}",
				fmt.Sprintf("{{ $value | humanizePercentage }} of the canary's observations at stage {{ $labels.stage }} failed over %s (tolerated: %s): markers there cannot be found, and will count as lost.", p.d(5*time.Minute), formatPercent(p.ObserverErrorRatio))),
		},
		{
			Alert: "SLOCanaryMarkersNotSent",
			// Skipping in every 5m window for 10m: a moment at the tracker's
			// cap while a stage catches up is not worth a ticket.
			Expr: fmt.Sprintf(`sum by (namespace, job, reason) (increase(slo_canary_markers_not_sent_total[%s])) > 0`,
				p.d(5*time.Minute)),
			For:    p.d(10 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryMarkersNotSent",
				"slo-canary skips markers ({{ $labels.reason }})",
				fmt.Sprintf("{{ $value | humanize }} markers were not sent in the last %s (reason {{ $labels.reason }}), and markers have been skipped for %s: the freshness SLI has gaps while this lasts.", p.d(5*time.Minute), p.d(10*time.Minute))),
		},
		{
			Alert: "SLOCanaryTrackerNearlyFull",
			// Warns before SLOCanaryMarkersNotSent: markers pile up when a
			// stage is far behind, and memory grows with them.
			Expr:   `max by (namespace, job, instance) (slo_canary_markers_tracked / slo_canary_markers_tracked_limit) > 0.8`,
			For:    p.d(15 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryTrackerNearlyFull",
				"slo-canary {{ $labels.instance }} holds {{ $value | humanizePercentage }} of its marker limit",
				fmt.Sprintf("slo-canary at {{ $labels.instance }} holds {{ $value | humanizePercentage }} of canary.max_tracked markers, over 80%% for %s; at the limit it stops sending markers and the freshness SLI gets gaps. A stage far behind (see slo_canary_markers_pending) or a deadline too long for the rate.", p.d(15*time.Minute))),
		},
		{
			Alert: "SLOCanaryQueryProbesNotMeasuring",
			// A probe that takes its journeys from SLO-Scout and has none
			// sends nothing: its requests are no_journeys, outside the query
			// SLI, so no burn-rate alert can fire for it. A ticket, not a
			// page: SLO-Scout may simply not have discovered journeys yet.
			Expr:   `max by (namespace, job, probe) (slo_canary_query_probe_not_measuring) == 1`,
			For:    p.d(15 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryQueryProbesNotMeasuring",
				"slo-canary query probe {{ $labels.probe }} is not measuring",
				fmt.Sprintf("For %s query probe {{ $labels.probe }} has had no journey id to query (not_measuring is {{ $value }}): journey discovery (queries.journey_discovery) found none for its services, or SLO-Scout's journeys endpoint failed before any was found. Its requests are not sent (outcome no_journeys) and its query-latency SLO is not judged. See slo_canary_query_journey_discoveries_total by result.", p.d(15*time.Minute))),
		},
		{
			Alert: "SLOCanaryConfigReloadRejected",
			// The canary keeps running on its last valid config, so nothing
			// else shows that an edit of the ConfigMap did not take.
			// The value is the age of the config in effect.
			Expr: `max by (namespace, job, instance) (time() - slo_canary_config_last_reload_success_timestamp_seconds)` +
				` and on (namespace, job, instance) max by (namespace, job, instance) (slo_canary_config_last_reload_successful) == 0`,
			For:    p.d(10 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryConfigReloadRejected",
				"slo-canary {{ $labels.instance }} did not apply its config file",
				fmt.Sprintf("slo-canary at {{ $labels.instance }} has not applied its changed config file for %s and runs on the config it loaded {{ $value | humanizeDuration }} ago: the change is not in effect, and a restart of the pod would fail on that file. The log says why: \"config reload rejected\" (the keys at fault, as slo-canary check-config on the file shows) or \"config reload failed\" (valid, but it did not start).", p.d(10*time.Minute))),
		},
		{
			Alert: "SLOCanaryCheckpointFailures",
			Expr: fmt.Sprintf(`sum by (namespace, job) (increase(slo_canary_checkpoint_failures_total[%s])) > 0`,
				p.d(5*time.Minute)),
			For:    p.d(10 * time.Minute),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryCheckpointFailures",
				"slo-canary cannot write its checkpoint",
				fmt.Sprintf("{{ $value | humanize }} checkpoint writes or reads of the state file failed in the last %s, and they have kept failing for %s: after a restart, markers in flight may be counted as unmeasured instead of judged.", p.d(5*time.Minute), p.d(10*time.Minute))),
		},
		{
			Alert: "SLOCanaryBlind",
			// The time since the latest acknowledged marker, or since the
			// process started if none was acknowledged since: a restart
			// resets the gauge, and a fresh canary gets the same grace as a
			// running one. Whatever the cause, even one the ingest SLI
			// cannot count (injection off or stuck, the tracker full).
			Expr: fmt.Sprintf(`time()
-
(
  max by (namespace, job, instance) (slo_canary_last_marker_sent_timestamp_seconds{job=%[1]q})
    > on (namespace, job, instance)
  max by (namespace, job, instance) (process_start_time_seconds{job=%[1]q})
  or
  max by (namespace, job, instance) (process_start_time_seconds{job=%[1]q})
)
> %[2]s
and on (namespace, job, instance)
%[3]s == 1`, p.CanaryJob, formatFloat(p.scaled(p.BlindAfter).Seconds()), up),
			Labels: map[string]string{"severity": SeverityTicket},
			Annotations: p.annotations("SLOCanaryBlind",
				"slo-canary {{ $labels.instance }} has had no marker acknowledged for {{ $value | humanizeDuration }}",
				fmt.Sprintf("slo-canary at {{ $labels.instance }} is up but Kafka has acknowledged none of its markers for {{ $value | humanizeDuration }} (more than %s): it injects nothing, so no freshness alert can fire. "+
					"Kafka is down or refuses writes, or the canary's own configuration or network keeps it from Kafka (slo_canary_ingest_errors_total by reason, and its log: \"marker injection failing\"), "+
					"or injection is off (canary.rate 0) or held back (slo_canary_markers_not_sent_total).", p.d(p.BlindAfter))),
		},
	}
}

// latestVerdict is the verdict of the latest run of each profile (or run)
// across the canary's replicas: the one from the replica whose timestamp is
// the latest. Scheduled runs go to the coordination group's leader, so after
// a failover an older replica still exports its own, older verdict; the
// highest verdict of all would let an old pass hide a newer failure. Without
// timestamps it falls back to the highest verdict.
func latestVerdict(verdict, timestamp, label string) string {
	by := "namespace, job, " + label
	return fmt.Sprintf(`(
  max by (%[1]s) (
    %[2]s
    and on (namespace, job, instance, %[4]s)
    (%[3]s == on (%[1]s) group_left () max by (%[1]s) (%[3]s))
  )
  or
  max by (%[1]s) (%[2]s)
)`, by, verdict, timestamp, label)
}
