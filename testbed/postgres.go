package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Postgres is a throwaway PostgreSQL server built with initdb and pg_ctl from
// PATH, in a temporary directory, on a free loopback port. It exists for tests,
// the demo and benchmarks; Close removes every trace of it.
type Postgres struct {
	Dir  string // data directory and socket directory live under it
	Port int
	User string // superuser name, no password (trust on loopback only)

	cred *syscall.Credential // set when running as root: postgres refuses uid 0
	log  string
	opts PostgresOptions
}

// PostgresOptions select how StartPostgresWith configures the server.
type PostgresOptions struct {
	// TLSCertFile and TLSKeyFile, when set, turn ssl on with this server
	// certificate and key (PEM). They are copied into the data directory and
	// made readable only by the server's account, as PostgreSQL demands.
	TLSCertFile, TLSKeyFile string
	// HostSSLOnly accepts TCP connections only over TLS (pg_hba hostssl), so
	// a client with sslmode=disable is refused.
	HostSSLOnly bool
}

// PostgresAvailable reports whether initdb and pg_ctl are on PATH.
func PostgresAvailable() bool {
	_, e1 := exec.LookPath("initdb")
	_, e2 := exec.LookPath("pg_ctl")
	return e1 == nil && e2 == nil
}

// StartPostgres initialises and starts a new server. The caller must Close it.
func StartPostgres(ctx context.Context) (*Postgres, error) {
	return StartPostgresWith(ctx, PostgresOptions{})
}

// StartPostgresWith is StartPostgres with options (TLS). The caller must Close it.
func StartPostgresWith(ctx context.Context, o PostgresOptions) (*Postgres, error) {
	if !PostgresAvailable() {
		return nil, errors.New("initdb/pg_ctl not found on PATH")
	}
	dir, err := os.MkdirTemp("", "slo-canary-pg-")
	if err != nil {
		return nil, fmt.Errorf("postgres temp dir: %w", err)
	}
	p := &Postgres{Dir: dir, User: "canary", log: filepath.Join(dir, "server.log"), opts: o}
	if os.Geteuid() == 0 {
		// PostgreSQL will not run as root. Run it as an unprivileged account.
		cred, err := unprivileged()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		p.cred = cred
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres temp dir: %w", err)
		}
	}
	if out, err := p.cmd(ctx, "initdb", "-D", p.data(), "-U", p.User, "-A", "trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, bytes.TrimSpace(out))
	}
	if err := p.configureTLS(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// configureTLS installs the certificate and key and, if asked, a pg_hba.conf
// that admits TCP clients only over TLS.
func (p *Postgres) configureTLS() error {
	o := p.opts
	if o.TLSCertFile == "" && o.TLSKeyFile == "" {
		return nil
	}
	for _, f := range []struct{ src, dst string }{{o.TLSCertFile, "server.crt"}, {o.TLSKeyFile, "server.key"}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("postgres tls: %w", err)
		}
		if err := p.writeDataFile(f.dst, b); err != nil {
			return err
		}
	}
	if o.HostSSLOnly {
		hba := "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"
		if err := p.writeDataFile("pg_hba.conf", []byte(hba)); err != nil {
			return err
		}
	}
	return nil
}

// writeDataFile writes a 0600 file into the data directory, owned by the
// server's account.
func (p *Postgres) writeDataFile(name string, b []byte) error {
	path := filepath.Join(p.data(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("postgres %s: %w", name, err)
	}
	if p.cred != nil {
		if err := os.Chown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return fmt.Errorf("postgres %s: %w", name, err)
		}
	}
	return nil
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and no 'postgres' or 'nobody' account to run PostgreSQL as")
}

func (p *Postgres) data() string { return filepath.Join(p.Dir, "data") }

func (p *Postgres) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), "LC_ALL=C")
	if p.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return c
}

// Start starts the server (again) on a free port, or on the port it had before
// if it was started once already, so DSNs handed out stay valid across a Stop.
func (p *Postgres) Start(ctx context.Context) error {
	if p.Port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		p.Port = port
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off", p.Port, p.Dir)
	if p.opts.TLSCertFile != "" {
		opts += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
	}
	out, err := p.cmd(ctx, "pg_ctl", "-D", p.data(), "-l", p.log, "-o", opts, "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		logTail, _ := os.ReadFile(p.log)
		return fmt.Errorf("pg_ctl start: %w: %s\n%s", err, bytes.TrimSpace(out), tail(string(logTail), 2000))
	}
	return nil
}

// Stop stops the server and keeps its data, so Start can bring it back.
func (p *Postgres) Stop(ctx context.Context) error {
	out, err := p.cmd(ctx, "pg_ctl", "-D", p.data(), "-m", "fast", "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Close stops the server (if running) and removes its directory.
func (p *Postgres) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if _, statErr := os.Stat(filepath.Join(p.data(), "postmaster.pid")); statErr == nil {
		err = p.Stop(ctx)
	}
	if rmErr := os.RemoveAll(p.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// DSN is a connection string for the superuser to database db.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", p.User, p.Port, db)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
