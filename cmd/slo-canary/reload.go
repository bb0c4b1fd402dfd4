package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/slo-scout/slo-canary/config"
)

// defaultReloadPoll is how often the config file is checked for changes.
// A ticker in the reload loop rather than a scheduler job: the loop must
// outlive every generation's scheduler, and a missed tick costs nothing.
const defaultReloadPoll = 5 * time.Second

// reloadMetrics are the reload gauges (blackbox_exporter's, with the
// slo_canary_ prefix). They live on a registry that outlives generations.
type reloadMetrics struct {
	success   prometheus.Gauge
	successTS prometheus.Gauge
	hash      prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	f := promauto.With(reg)
	return &reloadMetrics{
		success: f.NewGauge(prometheus.GaugeOpts{
			Name: "slo_canary_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful (1) or rejected (0).",
		}),
		successTS: f.NewGauge(prometheus.GaugeOpts{
			Name: "slo_canary_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration load (the start counts).",
		}),
		hash: f.NewGauge(prometheus.GaugeOpts{
			Name: "slo_canary_config_hash",
			Help: "Hash of the configuration in effect (first 48 bits of the SHA-256 of the rendered, secret-redacted config): it changes when a reload applied something.",
		}),
	}
}

// withState forces a checkpoint file, the carrier of pending markers from one
// generation to the next, when the daemon can reload.
func (d *daemon) withState(c *config.Config) *config.Config {
	if c.Canary.StateFile == "" && d.stateFile != "" {
		c.Canary.StateFile = d.stateFile
		if c.Canary.CheckpointInterval <= 0 { // only validated when the user sets a state file
			c.Canary.CheckpointInterval = config.Defaults().Canary.CheckpointInterval
		}
	}
	return c
}

// loop waits for reload triggers and swaps generations until ctx ends or a
// part fails. Without a config file nothing triggers a reload: a SIGHUP (sent
// by habit, or by tooling that reloads every daemon; hup is nil unless asked
// for) is said to change nothing.
func (d *daemon) loop(ctx context.Context, gen *generation, hup <-chan os.Signal) error {
	var tick <-chan time.Time // nil: no file to watch
	var lastSum []byte
	if d.path != "" {
		t := time.NewTicker(d.poll)
		defer t.Stop()
		tick, lastSum = t.C, fileSum(d.path)
	}
	for {
		var trigger string
		select {
		case <-ctx.Done():
			gen.cancel()
			<-gen.done
			return gen.err
		case <-gen.done:
			if gen.err == nil && ctx.Err() == nil {
				return errors.New("the canary's parts stopped on their own") // else the endpoint would outlive them
			}
			return gen.err
		case <-hup:
			if d.path == "" {
				d.logger.Warn("SIGHUP ignored: run was started without --config, so there is no file to reload; the environment and flags are read only at start")
				continue
			}
			trigger = "SIGHUP"
		case <-tick:
			sum := fileSum(d.path)
			if bytes.Equal(sum, lastSum) {
				continue
			}
			lastSum, trigger = sum, "file changed"
		}
		next := d.candidate(gen.cfg, trigger)
		if next == nil {
			continue
		}
		d.logger.Info("config reload: restarting the canary's parts", "trigger", trigger)
		gen.cancel()
		<-gen.done
		if gen.err != nil {
			return gen.err
		}
		ng, err := d.start(ctx, next, true)
		if err != nil {
			d.m.success.Set(0)
			d.logger.Error("config reload failed: new config did not start; restarting the previous one", "file", d.path, "err", err)
			if ng, err = d.start(ctx, gen.cfg, false); err != nil {
				return err
			}
			gen = ng
			continue
		}
		gen = ng
		d.logger.Info("config reloaded", "file", d.path, "trigger", trigger)
	}
}

// candidate loads the config file again: nil when it is invalid (reported)
// or changes nothing (also a successful reload).
func (d *daemon) candidate(cur *config.Config, trigger string) *config.Config {
	next, err := config.Load(d.path, d.flags)
	if err != nil {
		d.m.success.Set(0)
		d.logger.Error("config reload rejected; keeping the running config", "file", d.path, "trigger", trigger, "err", err)
		return nil
	}
	next = d.withState(next)
	if next.HTTP != cur.HTTP {
		d.logger.Warn("config reload: http settings change only on restart; keeping the running ones",
			"listen", cur.HTTP.Listen, "web_config_file", cur.HTTP.WebConfigFile)
		next.HTTP = cur.HTTP
	}
	if reflect.DeepEqual(next, cur) {
		d.m.success.Set(1)
		d.m.successTS.SetToCurrentTime()
		d.logger.Info("config reload: nothing changed", "file", d.path, "trigger", trigger)
		return nil
	}
	return next
}

// fileSum is the config file's content hash; nil when unreadable (the
// reload that follows reports why).
func fileSum(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := sha256.Sum256(b)
	return s[:]
}

// configHash is exported as a gauge: 48 bits, exact in a float64. It hashes
// the rendered config, secrets redacted, so it reveals nothing secret.
func configHash(c *config.Config) float64 {
	b, err := config.Render(c)
	if err != nil {
		return 0
	}
	s := sha256.Sum256(b)
	return float64(binary.BigEndian.Uint64(s[:8]) >> 16)
}
