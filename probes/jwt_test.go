package probes

import (
	"encoding/base64"
	"encoding/json"
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
	bearer, err := newBearer(auth)
	if err != nil {
		t.Fatal(err)
	}
	m := &jwtMinter{key: []byte("secret"), iss: auth.JWTIssuer, aud: auth.JWTAudience, sub: auth.JWTSubject, ttl: auth.JWTTTL, now: func() time.Time { return now }}
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
	if b, err := newBearer(config.QueryAuth{}); b != nil || err != nil {
		t.Errorf("no auth: bearer set %t, err %v", b != nil, err)
	}
}
