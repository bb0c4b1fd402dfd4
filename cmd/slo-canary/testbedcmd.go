package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/testbed"
)

// faultFlags are the fault profile flags shared by testbed and demo.
type faultFlags struct {
	faults testbed.Faults
}

func (f *faultFlags) bind(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.DurationVar(&f.faults.Delay, "delay", 0, "pipeline fault: delay before an event becomes visible")
	fs.DurationVar(&f.faults.Jitter, "jitter", 0, "pipeline fault: uniform jitter around --delay")
	fs.Float64Var(&f.faults.DropPct, "drop", 0, "pipeline fault: percentage of events dropped (0-100)")
	fs.Float64Var(&f.faults.DuplicatePct, "duplicate", 0, "pipeline fault: percentage of events delivered twice (0-100)")
	fs.BoolVar(&f.faults.Reorder, "reorder", false, "pipeline fault: reorder events within a window")
}

func newTestbedCmd() *cobra.Command {
	var (
		opts   testbed.ServeOptions
		faults faultFlags
		enc    string
		level  string
		capac  string
	)
	cmd := &cobra.Command{
		Use:   "testbed",
		Short: "Run the reference pipeline (Kafka, PostgreSQL, a stream job) to try the canary against",
		Long: `Runs SLO-Scout's reference pipeline in one process: an in-process Kafka
(kfake) with raw-telemetry and capsule-events, a consumer in group
capsule-ingest-consumer that writes telemetry_events rows into a throwaway
PostgreSQL (when initdb is on PATH) and forwards capsules, and a control API
to change the fault profile while it runs. With --write-config it writes a
config that 'slo-canary run --config' accepts as is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Pipeline.Encoding = testbed.Encoding(enc)
			if capac != "" && capac != "0" {
				c, err := config.ParseRate(capac)
				if err != nil {
					return &exitError{code: exitConfig, err: fmt.Errorf("--capacity: %w", err)}
				}
				faults.faults.Capacity = c
			}
			opts.Pipeline.Faults = faults.faults
			if err := faults.faults.Validate(); err != nil {
				return &exitError{code: exitConfig, err: err}
			}
			logger := newLogger(logConfig(level), cmd.ErrOrStderr())
			opts.Out = cmd.OutOrStdout()
			opts.Logger = logger
			if err := testbed.Serve(cmd.Context(), opts); err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.Int32Var(&opts.Pipeline.Partitions, "partitions", 10, "partitions of raw-telemetry and capsule-events")
	fs.IntVar(&opts.Pipeline.KafkaPort, "kafka-port", 0, "Kafka listener port on 127.0.0.1 (0: a free port)")
	fs.StringVar(&enc, "encoding", "avro", "encoding of ingest events: avro or json")
	fs.StringVar(&opts.ControlListen, "control-listen", "127.0.0.1:0", "control API address")
	fs.StringVar(&opts.WriteConfig, "write-config", "", "write a canary config file aimed at this testbed")
	fs.StringVar(&opts.CanaryListen, "canary-listen", "127.0.0.1:9464", "http.listen in the written config")
	fs.BoolVar(&opts.NoPostgres, "no-postgres", false, "run without the database sink")
	fs.StringVar(&level, "log-level", "info", "log level")
	fs.StringVar(&capac, "capacity", "", "events per second the stream stage processes, N/s or N/min (8000/s); above it its consumer group falls behind (default: no limit; PUT /faults {\"capacity\": N} changes it)")
	faults.bind(cmd)
	return cmd
}
