package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// ServeOptions configure Serve.
type ServeOptions struct {
	// Pipeline configures the pipeline. A PostgresDSN given here is used as is
	// (and no server is started); otherwise Serve starts one if it can.
	Pipeline PipelineConfig
	// NoPostgres runs without a database sink even if PostgreSQL is available.
	NoPostgres bool
	// ControlListen is the control API address; default 127.0.0.1:0.
	ControlListen string
	// WriteConfig, if set, is where a config file for `slo-canary run`
	// pointing at this testbed is written.
	WriteConfig string
	// CanaryListen is http.listen in that file; default 127.0.0.1:9464.
	CanaryListen string
	// APIListen is the reference SLO-Scout API's address (see API); default
	// 127.0.0.1:0. APIProfile is its latency and fault profile; nil:
	// DefaultAPIProfile.
	APIListen  string
	APIProfile *APIProfile
	// Out receives the human-readable addresses; default io.Discard.
	Out    io.Writer
	Logger *slog.Logger
	// Ready, if set, is called once everything is up, before Serve blocks.
	Ready func(ServeInfo)
}

// ServeInfo is where a running testbed can be reached.
type ServeInfo struct {
	Brokers []string
	// DSN is what the canary should use: a read-only role on the slo_scout
	// database when Serve started PostgreSQL, the given DSN otherwise, empty
	// without a database.
	DSN string
	// AdminDSN is the superuser DSN of a started server (empty otherwise).
	AdminDSN   string
	ControlURL string
	ConfigPath string
	Pipeline   *Pipeline
	// APIURL is the reference API's base URL, for queries.base_url.
	APIURL string
	API    *API
}

// Database and role Serve creates on a PostgreSQL server it started. The
// database has the contract's name; the canary gets a read-only role, as the
// contract asks of real deployments.
const (
	ServeDatabase = "slo_scout"
	ServeReadRole = "slo_canary"
)

// Serve runs a standalone testbed: PostgreSQL (when initdb is available and
// not disabled), the Kafka cluster and pipeline, and the control API. It
// prints the addresses to opts.Out, writes the canary config if asked, blocks
// until ctx is done, and then removes everything it started.
func Serve(ctx context.Context, opts ServeOptions) (err error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ControlListen == "" {
		opts.ControlListen = "127.0.0.1:0"
	}
	if opts.CanaryListen == "" {
		opts.CanaryListen = "127.0.0.1:9464"
	}
	log := opts.Logger
	cfg := opts.Pipeline
	if cfg.Logger == nil {
		cfg.Logger = log.With("component", "pipeline")
	}
	info := ServeInfo{DSN: cfg.PostgresDSN}

	var pg *Postgres
	switch {
	case opts.NoPostgres:
		cfg.PostgresDSN, info.DSN = "", ""
	case cfg.PostgresDSN != "":
	case !PostgresAvailable():
		log.Warn("initdb/pg_ctl not on PATH: running without a database sink")
	default:
		pg, err = StartPostgres(ctx)
		if err != nil {
			return fmt.Errorf("testbed: %w", err)
		}
		defer func() {
			if cerr := pg.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("testbed: remove postgres: %w", cerr)
			}
		}()
		info.AdminDSN = pg.DSN(ServeDatabase)
		if err := execOn(ctx, pg.DSN("postgres"), "CREATE DATABASE "+ServeDatabase); err != nil {
			return err
		}
		cfg.PostgresDSN = info.AdminDSN
	}

	p, err := NewPipeline(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	info.Brokers, info.Pipeline = p.Brokers(), p

	if pg != nil {
		// After NewPipeline: the grant covers the tables it created.
		// The same role the README tells operators to create.
		if err := execOn(ctx, info.AdminDSN, ReadOnlyRoleSQL); err != nil {
			return fmt.Errorf("readonly-role.sql: %w", err)
		}
		info.DSN = fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", ServeReadRole, pg.Port, ServeDatabase)
	}

	apiSrv, apiLn, err := startAPI(&opts, &info)
	if err != nil {
		return err
	}
	defer apiLn.Close()
	ln, err := net.Listen("tcp", opts.ControlListen)
	if err != nil {
		return fmt.Errorf("testbed: control API listen %s: %w", opts.ControlListen, err)
	}
	control := http.NewServeMux()
	control.Handle("/", p.Handler())
	control.Handle("/reference-api/", info.API.ControlHandler())
	srv := &http.Server{Handler: control, ReadHeaderTimeout: 10 * time.Second}
	info.ControlURL = "http://" + ln.Addr().String()

	if opts.WriteConfig != "" {
		info.ConfigPath = opts.WriteConfig
		if err := os.WriteFile(opts.WriteConfig, canaryConfig(info, p.Config(), opts.CanaryListen), 0o644); err != nil {
			ln.Close()
			return fmt.Errorf("testbed: write canary config: %w", err)
		}
	}

	fmt.Fprintf(opts.Out, "kafka:    %s (topics %s, %s; %d partitions)\n",
		strings.Join(info.Brokers, ","), p.cfg.IngestTopic, p.cfg.CapsuleTopic, p.cfg.Partitions)
	if info.DSN != "" {
		fmt.Fprintf(opts.Out, "postgres: %s\n", info.DSN)
	} else {
		fmt.Fprintf(opts.Out, "postgres: none (no database sink)\n")
	}
	if info.AdminDSN != "" {
		fmt.Fprintf(opts.Out, "admin:    %s\n", info.AdminDSN)
	}
	fmt.Fprintf(opts.Out, "control:  %s (GET/PUT /faults, POST /stall, POST /resume, GET /stats, GET /truth/{id})\n", info.ControlURL)
	fmt.Fprintf(opts.Out, "api:      %s (reference SLO-Scout API; GET/PUT /reference-api/profile, POST /reference-api/stall|resume on control)\n", info.APIURL)
	if info.ConfigPath != "" {
		fmt.Fprintf(opts.Out, "config:   %s (slo-canary run --config %s)\n", info.ConfigPath, info.ConfigPath)
	}
	log.Info("testbed up", "brokers", info.Brokers, "control", info.ControlURL, "database", info.DSN != "")
	if opts.Ready != nil {
		opts.Ready(info)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("testbed: control API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := apiSrv.Serve(apiLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("testbed: reference API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Closed, not shut down: a request the API holds (a stall, a timeout
		// fault) must not hold the exit.
		return errors.Join(srv.Shutdown(sctx), apiSrv.Close())
	})
	return g.Wait()
}

func execOn(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("testbed: connect postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("testbed: %s: %w", strings.Fields(sql)[0], err)
	}
	return nil
}

// canaryConfig is a config file for `slo-canary run` aimed at the testbed: the
// keys follow config.Config's mapstructure tags. Strings are quoted with
// strconv.Quote, which is valid YAML for the ASCII values written here.
func canaryConfig(info ServeInfo, cfg PipelineConfig, listen string) []byte {
	q := strconv.Quote
	var b strings.Builder
	b.WriteString("# Written by `slo-canary testbed`: a canary aimed at the reference pipeline.\n")
	b.WriteString("kafka:\n  brokers:\n")
	for _, br := range info.Brokers {
		fmt.Fprintf(&b, "    - %s\n", q(br))
	}
	fmt.Fprintf(&b, "canary:\n  topic: %s\n  encoding: %s\n", q(cfg.IngestTopic), q(string(cfg.Encoding)))
	fmt.Fprintf(&b, "http:\n  listen: %s\n", q(listen))
	// Only the group the pipeline runs: a group named here that does not
	// exist is reported down (SLOScoutConsumerGroupDown), as it should be.
	fmt.Fprintf(&b, "consumer_lag:\n  groups: [%s]\n", q(cfg.Group))
	b.WriteString("observers:\n")
	if info.DSN != "" {
		fmt.Fprintf(&b, "  database:\n    enabled: true\n    type: sql\n    sql:\n      dsn: %s\n", q(info.DSN))
	} else {
		// No database sink: the default database stage would wait for a
		// server that is not there, and the canary would never be ready.
		b.WriteString("  database:\n    enabled: false\n")
	}
	fmt.Fprintf(&b, "  capsules:\n    enabled: true\n    type: kafka\n    deadline: 5m\n    kafka:\n      topic: %s\n      extract: json\n      field: sample_event_ids\n", q(cfg.CapsuleTopic))
	if info.API != nil {
		b.WriteString(info.API.QueriesConfig(info.APIURL))
	}
	return []byte(b.String())
}
