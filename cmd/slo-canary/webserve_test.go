package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "slo-canary test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

// TestDaemonWebConfig runs the daemon against the reference pipeline with a
// web config file holding TLS and basic auth: only HTTPS with the right user
// and password gets the metrics; a wrong password and no credentials are
// refused (the health probes included); plain HTTP gets nothing.
func TestDaemonWebConfig(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 1, PostgresDSN: dsn})

	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webFile := filepath.Join(dir, "web.yml")
	web := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n", certFile, keyFile, hash)
	if err := os.WriteFile(webFile, []byte(web), 0o600); err != nil {
		t.Fatal(err)
	}

	c := pipelineConfig(t, p, dsn, 0, func(c *config.Config) { c.HTTP.WebConfigFile = webFile })
	addr := startDaemon(t, daemonOpts{cfg: c}).addr
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(t *testing.T, url, user, pass string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("https with the right user and password", func(t *testing.T) {
		code, body := get(t, "https://"+addr+"/metrics", "prometheus", "s3cret")
		if code != http.StatusOK || !strings.Contains(body, "slo_canary_build_info{") {
			t.Fatalf("%d, metrics present: %v", code, strings.Contains(body, "slo_canary_build_info{"))
		}
	})
	for _, c := range []struct{ name, path, user, pass string }{
		{"wrong password", "/metrics", "prometheus", "wrong"},
		{"unknown user", "/metrics", "nobody", "s3cret"},
		{"no credentials", "/metrics", "", ""},
		{"health probe without credentials", "/healthz", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := get(t, "https://"+addr+c.path, c.user, c.pass)
			if code != http.StatusUnauthorized || strings.Contains(body, "slo_canary_") {
				t.Fatalf("%d, want 401; body %.80q", code, body)
			}
		})
	}
	t.Run("plain http", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return // refused outright: also fine
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "slo_canary_") {
			t.Fatalf("plain http got %d: %.80q", resp.StatusCode, b)
		}
	})
}
