package probes

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
)

// TestSignHS256RFC7515 checks the signer against the HS256 example of RFC
// 7515, appendix A.1, byte for byte.
func TestSignHS256RFC7515(t *testing.T) {
	header := "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}"
	payload := "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
	key, err := base64.RawURLEncoding.DecodeString("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
	if err != nil {
		t.Fatal(err)
	}
	want := "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9" +
		".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" +
		".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	if got := signHS256(key, []byte(header), []byte(payload)); got != want {
		t.Errorf("signHS256 =\n%s\nwant\n%s", got, want)
	}
}

// TestJWTMinter: the claims SLO-Scout checks, one token reused for half its
// lifetime, then a new one.
func TestJWTMinter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	auth := config.Defaults().Queries.Auth
	auth.JWTSigningKey = "secret"
	bearer, err := newBearer(auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &jwtMinter{key: newFileSecret("k", "", "secret", nil), iss: auth.JWTIssuer, aud: auth.JWTAudience, sub: auth.JWTSubject, ttl: auth.JWTTTL, now: func() time.Time { return now }}
	first, _ := m.token()
	parts := strings.Split(first, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c jwtClaims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if c != (jwtClaims{Iss: "slo-scout", Aud: "slo-scout-api", Sub: "slo-canary", Iat: now.Unix(), Exp: now.Add(5 * time.Minute).Unix()}) {
		t.Errorf("claims %+v", c)
	}
	now = now.Add(2 * time.Minute)
	if again, _ := m.token(); again != first {
		t.Error("token re-minted before half its lifetime")
	}
	now = now.Add(31 * time.Second)
	if renewed, _ := m.token(); renewed == first {
		t.Error("token not renewed after half its lifetime")
	}
	if tok, err := bearer(); err != nil || strings.Count(tok, ".") != 2 {
		t.Errorf("bearer %q %v", tok, err)
	}
	if b, err := newBearer(config.QueryAuth{}, nil); b != nil || err != nil {
		t.Errorf("no auth: bearer set %t, err %v", b != nil, err)
	}
}

// TestSecretFilesFollowRotation: a token or signing key read from a file is
// re-read when the file changes (a rotated Kubernetes Secret), with no
// reload; a file that turns empty or disappears keeps the last good value,
// logged once and never with the value in the line.
func TestSecretFilesFollowRotation(t *testing.T) {
	old := secretRecheck
	secretRecheck = 0
	t.Cleanup(func() { secretRecheck = old })
	dir := t.TempDir()
	write := func(name, v string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		// Through a rename, as the kubelet swaps a Secret volume's files.
		if err := os.WriteFile(p+".tmp", []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	t.Run("token", func(t *testing.T) {
		logs.Reset()
		path := write("token", "token-one-xyz")
		bearer, err := newBearer(config.QueryAuth{Token: "token-one-xyz", TokenFile: path}, log)
		if err != nil {
			t.Fatal(err)
		}
		// The second has the first's length: written within one mtime tick,
		// only its content tells it apart.
		for _, want := range []string{"token-one-xyz", "token-two-xyz", "token-two-longer-xyz"} {
			write("token", want)
			if got, _ := bearer(); got != want {
				t.Errorf("bearer = %q, want %q", got, want)
			}
		}
		write("token", "")
		if got, _ := bearer(); got != "token-two-longer-xyz" {
			t.Errorf("after the file emptied: bearer = %q, want the last good token", got)
		}
		os.Remove(path)
		if got, _ := bearer(); got != "token-two-longer-xyz" {
			t.Errorf("after the file went away: bearer = %q, want the last good token", got)
		}
		if n := strings.Count(logs.String(), "cannot re-read secret file"); n != 1 {
			t.Errorf("%d warnings for a failing file, want 1 until it recovers:\n%s", n, logs.String())
		}
		if strings.Contains(logs.String(), "token-") {
			t.Errorf("a token is in the logs:\n%s", logs.String())
		}
	})
	t.Run("signing key", func(t *testing.T) {
		logs.Reset()
		path := write("key", "key-one")
		auth := config.Defaults().Queries.Auth
		auth.JWTSigningKey, auth.JWTSigningKeyFile = "key-one", path
		bearer, err := newBearer(auth, log)
		if err != nil {
			t.Fatal(err)
		}
		verify := func(tok, key string) bool {
			i := strings.LastIndexByte(tok, '.')
			mac := hmac.New(sha256.New, []byte(key))
			mac.Write([]byte(tok[:i]))
			return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) == tok[i+1:]
		}
		first, _ := bearer()
		if !verify(first, "key-one") {
			t.Fatal("token not signed with the key from the file")
		}
		write("key", "key-two-rotated")
		// The current token is still fresh, but signed with a retired key:
		// a new one is minted at once.
		second, _ := bearer()
		if !verify(second, "key-two-rotated") {
			t.Error("after rotation the token is not signed with the new key")
		}
		if strings.Contains(logs.String(), "key-one") || strings.Contains(logs.String(), "key-two") {
			t.Errorf("a key is in the logs:\n%s", logs.String())
		}
	})
}
