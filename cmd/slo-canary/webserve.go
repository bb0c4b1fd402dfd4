package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
)

// serveHTTP serves srv on ln until ctx is cancelled, then shuts it down
// within a bound. With a web config file (http.web_config_file) it serves
// through exporter-toolkit, as node_exporter's --web.config.file: TLS from
// tls_server_config and basic auth from basic_auth_users (bcrypt hashes),
// both re-read from the file on every connection and request, so rotated
// certificates and changed users apply without a restart. The listener is
// ours, so the address it reports (port 0 in tests) is the one served.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, webConfigFile string, logger *slog.Logger) error {
	if srv.ErrorLog == nil { // TLS handshake failures and the like: into our log, not stderr
		srv.ErrorLog = slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelWarn)
	}
	errc := make(chan error, 1)
	go func() {
		errc <- web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &webConfigFile}, logger.With("component", "http"))
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			return fmt.Errorf("http server shutdown: %w", serr)
		}
		err = <-errc
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}
