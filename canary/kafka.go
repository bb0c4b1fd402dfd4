package canary

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/slo-scout/slo-canary/config"
)

// KafkaOpts builds the connection options every Kafka client of the canary
// shares: brokers, timeouts, TLS and SASL. Credentials come from the config,
// which took them from the environment or files.
func KafkaOpts(cfg config.Kafka, logger *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.RequestTimeoutOverhead(cfg.RequestTimeout),
		kgo.WithLogger(kslog.New(logger.With("component", "kafka"))),
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout}
	if cfg.TLS.Enabled {
		tc, err := TLSConfig(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls: %w", err)
		}
		td := &tls.Dialer{NetDialer: dialer, Config: tc}
		opts = append(opts, kgo.Dialer(td.DialContext))
	} else {
		opts = append(opts, kgo.Dialer(dialer.DialContext))
	}
	if m := strings.ToUpper(cfg.SASL.Mechanism); m != "" {
		// PLAIN without TLS is allowed, and warned about by config.Warnings.
		user, pass := cfg.SASL.Username, cfg.SASL.Password.Reveal()
		switch m {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("kafka.sasl.mechanism: unknown mechanism %q", cfg.SASL.Mechanism)
		}
	}
	return opts, nil
}

// TLSConfig builds a client TLS configuration from files.
func TLSConfig(c config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in, documented
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
