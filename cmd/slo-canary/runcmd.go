package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
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
			if path != "" { // a file to watch: reload on change and SIGHUP (reload.go)
				return runReloading(cmd.Context(), reloadOptions{path: path, flags: cmd.Flags(), cfg: cfg, logger: logger})
			}
			// No file to reload: a SIGHUP (sent by habit, or by tooling that
			// reloads every daemon) is said to change nothing, rather than
			// taking its default action and ending the process.
			stop := ignoreSIGHUP(logger)
			defer stop()
			return runDaemon(cmd.Context(), cfg, logger, nil)
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
	opts := &slog.HandlerOptions{Level: lvl}
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
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// daemonHooks lets the demo watch a running daemon.
type daemonHooks struct {
	started func(svc *canary.Service, addr net.Addr)
}

// runDaemon runs the service and its HTTP endpoint until ctx is cancelled.
func runDaemon(ctx context.Context, cfg *config.Config, logger *slog.Logger, hooks *daemonHooks) error {
	reg := newRegistry()
	svc, parts, err := buildParts(ctx, cfg, reg, logger)
	if err != nil {
		return err
	}
	ready := partsReady(parts)
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)}
	}
	srv := &http.Server{
		Handler:           canary.Handler(prometheus.Gatherer(reg), ready),
		ReadHeaderTimeout: 10 * time.Second,
	}
	logger.Info("slo-canary started", "listen", ln.Addr().String(), "topic", cfg.Canary.Topic,
		"instance", cfg.Canary.Instance, "stages", cfg.EnabledObservers())
	if hooks != nil && hooks.started != nil {
		hooks.started(svc, ln.Addr())
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		g.Go(func() error {
			if err := p.run(gctx); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			return nil
		})
	}
	g.Go(func() error { return serveHTTP(gctx, srv, ln, cfg.HTTP.WebConfigFile, logger) }) // webserve.go
	if err := g.Wait(); err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	logger.Info("slo-canary stopped")
	return nil
}

// buildParts builds the daemon's long-running parts, registering their
// metrics on reg. A config reload builds them again on a fresh registry.
func buildParts(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, logger *slog.Logger) (*canary.Service, []part, error) {
	logWarnings(logger, cfg)
	svc, err := canary.New(ctx, canary.Options{Config: cfg, Registerer: reg, Logger: logger})
	if err != nil {
		return nil, nil, &exitError{code: exitFailure, err: fmt.Errorf("start: %w", err)}
	}
	sched := sched.New(reg, logger.With("component", "scheduler"))
	extras, err := extraParts(ctx, daemonDeps{cfg: cfg, reg: reg, logger: logger, scheduler: sched, service: svc})
	if err != nil {
		return nil, nil, &exitError{code: exitFailure, err: fmt.Errorf("start: %w", err)}
	}
	return svc, append([]part{
		{name: "markers", run: svc.Run, ready: svc.Ready},
		{name: "scheduler", run: sched.Run},
	}, extras...), nil
}

// partsReady is /readyz: every part that can be unready is ready.
func partsReady(parts []part) func() error {
	return func() error {
		var errs []error
		for _, p := range parts {
			if p.ready != nil {
				if err := p.ready(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	}
}

// ignoreSIGHUP logs each SIGHUP as ignored until stop is called.
func ignoreSIGHUP(logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-hup:
				logger.Warn("SIGHUP ignored: run was started without --config, so there is no file to reload; the environment and flags are read only at start")
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-exited
	}
}
