package probes

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/slo-scout/slo-canary/config"
)

// newBearer returns what HTTP probes put after "Authorization: Bearer": the
// static token, or a JWT minted from the signing key. It returns nil when
// auth configures neither. A token or key read from a file follows the file:
// a rotated Kubernetes Secret is picked up within secretRecheck, with no
// reload; should the file turn unreadable or empty, the last good value
// stays in use and the problem is logged once.
func newBearer(auth config.QueryAuth, log *slog.Logger) (func() (string, error), error) {
	switch {
	case auth.Token != "" && auth.JWTSigningKey != "":
		return nil, errors.New("a token and a jwt_signing_key are both set")
	case auth.Token != "":
		tok := newFileSecret("queries.auth.token_file", auth.TokenFile, auth.Token.Reveal(), log)
		return func() (string, error) { v, _ := tok.get(); return v, nil }, nil
	case auth.JWTSigningKey != "":
		if auth.JWTTTL <= 0 {
			return nil, fmt.Errorf("jwt_ttl must be positive, got %s", auth.JWTTTL)
		}
		m := &jwtMinter{
			key: newFileSecret("queries.auth.jwt_signing_key_file", auth.JWTSigningKeyFile, auth.JWTSigningKey.Reveal(), log),
			iss: auth.JWTIssuer, aud: auth.JWTAudience, sub: auth.JWTSubject,
			ttl: auth.JWTTTL, now: time.Now,
		}
		return m.token, nil
	}
	return nil, nil
}

// secretRecheck is how often a secret file is looked at again.
var secretRecheck = time.Second

// fileSecret is a secret that may follow a file: value as loaded, then the
// file's content, read again at most every secretRecheck. The content is
// compared, not the file's time or size: a rotation to a value of the same
// length within one mtime tick still shows.
type fileSecret struct {
	key, path string
	log       *slog.Logger
	mu        sync.Mutex
	value     string
	checked   time.Time
	failing   bool
}

func newFileSecret(key, path, value string, log *slog.Logger) *fileSecret {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &fileSecret{key: key, path: path, value: value, log: log}
}

// get returns the current value, and whether it changed since the previous
// call.
func (f *fileSecret) get() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.path == "" || time.Since(f.checked) < secretRecheck {
		return f.value, false
	}
	f.checked = time.Now()
	data, err := os.ReadFile(f.path)
	if err == nil {
		v := strings.TrimRight(string(data), "\r\n")
		if v != "" {
			f.failing = false
			if v == f.value {
				return v, false
			}
			f.value = v
			f.log.Info("secret file changed; using the new value", "key", f.key, "path", f.path)
			return v, true
		}
		err = errors.New("the file is empty")
	}
	if !f.failing {
		// The error names the file, never its contents.
		f.log.Warn("cannot re-read secret file; keeping the last good value", "key", f.key, "path", f.path, "err", err)
		f.failing = true
	}
	return f.value, false
}

// jwtMinter mints HS256 JWTs with the claims SLO-Scout checks and reuses each
// for half its lifetime, so a token is never sent close to its expiry (clock
// skew between canary and backend) and signing is not per request.
type jwtMinter struct {
	key           *fileSecret
	iss, aud, sub string
	ttl           time.Duration
	now           func() time.Time
	mu            sync.Mutex
	current       string
	renewAt       time.Time
}

// jwtClaims are the registered claims SLO-Scout's backend validates.
type jwtClaims struct {
	Iss string `json:"iss"`
	Aud string `json:"aud"`
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

func (m *jwtMinter) token() (string, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	key, changed := m.key.get()
	if m.current != "" && now.Before(m.renewAt) && !changed {
		return m.current, nil
	}
	claims, err := json.Marshal(jwtClaims{Iss: m.iss, Aud: m.aud, Sub: m.sub, Iat: now.Unix(), Exp: now.Add(m.ttl).Unix()})
	if err != nil {
		return "", fmt.Errorf("jwt claims: %w", err)
	}
	m.current = signHS256([]byte(key), []byte(`{"alg":"HS256","typ":"JWT"}`), claims)
	m.renewAt = now.Add(m.ttl / 2)
	return m.current, nil
}

// signHS256 returns the compact JWS of header and payload (RFC 7515), signed
// with HMAC-SHA256.
func signHS256(key, header, payload []byte) string {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}
