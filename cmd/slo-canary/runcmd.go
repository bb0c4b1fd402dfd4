package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slo-scout/slo-canary/config"
)

func newRunCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the canary daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path, cmd)
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, cmd.ErrOrStderr())
			// With a file to watch: reload on change and SIGHUP (reload.go).
			// Without one, a SIGHUP is logged as ignored rather than taking
			// its default action and ending the process.
			return runReloading(cmd.Context(), reloadOptions{path: path, flags: cmd.Flags(), cfg: cfg, logger: logger, sighup: true})
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "path of the YAML config file")
	config.BindFlags(cmd.Flags())
	return cmd
}

func newCheckConfigCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration and print it, secrets redacted (exit 0 valid, 2 invalid)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path, cmd)
			if err != nil {
				return err
			}
			out, err := config.Render(cfg)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			cmd.OutOrStdout().Write(out)
			for _, w := range cfg.Warnings() {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "config OK")
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "path of the YAML config file")
	config.BindFlags(cmd.Flags())
	return cmd
}

// loadConfig turns every config problem into exit code 2, one line per problem.
func loadConfig(path string, cmd *cobra.Command) (*config.Config, error) {
	cfg, err := config.Load(path, cmd.Flags())
	if err != nil {
		return nil, &exitError{code: exitConfig, err: fmt.Errorf("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))}
	}
	return cfg, nil
}

// logWarnings logs what is valid in cfg but almost certainly not meant:
// every command that runs calls it once it has a logger (the daemon at each
// reload too); check-config prints the same list.
func logWarnings(logger *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		logger.Warn("config warning", "warning", w)
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: logDuration} // logging.go
	format := c.Format
	if format == "auto" || format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(newComponentHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(newComponentHandler(slog.NewJSONHandler(w, opts)))
}
