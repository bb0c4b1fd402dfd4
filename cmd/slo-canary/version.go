package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/slo-scout/slo-canary/internal/version"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "slo-canary %s (revision %s, %s)\n", version.Version, version.Revision, version.GoVersion)
			return nil
		},
	}
}

// newRegistry is the canary's own registry: Go and process collectors and
// slo_canary_build_info. Nothing uses the global registry.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "slo_canary",
		Name:      "build_info",
		Help:      "A metric with a constant '1' value labelled by version, revision and goversion of slo-canary.",
	}, []string{"version", "revision", "goversion"})
	bi.WithLabelValues(version.Version, version.Revision, version.GoVersion).Set(1)
	reg.MustRegister(bi)
	return reg
}
