package probes

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/slo-scout/slo-canary/config"
)

// newBearer returns what HTTP probes put after "Authorization: Bearer": the
// static token, or a JWT minted from the signing key. It returns nil when
// auth configures neither.
func newBearer(auth config.QueryAuth) (func() (string, error), error) {
	switch {
	case auth.Token != "" && auth.JWTSigningKey != "":
		return nil, errors.New("a token and a jwt_signing_key are both set")
	case auth.Token != "":
		tok := auth.Token.Reveal()
		return func() (string, error) { return tok, nil }, nil
	case auth.JWTSigningKey != "":
		if auth.JWTTTL <= 0 {
			return nil, fmt.Errorf("jwt_ttl must be positive, got %s", auth.JWTTTL)
		}
		m := &jwtMinter{
			key: []byte(auth.JWTSigningKey.Reveal()),
			iss: auth.JWTIssuer, aud: auth.JWTAudience, sub: auth.JWTSubject,
			ttl: auth.JWTTTL, now: time.Now,
		}
		return m.token, nil
	}
	return nil, nil
}

// jwtMinter mints HS256 JWTs with the claims SLO-Scout checks and reuses each
// for half its lifetime, so a token is never sent close to its expiry (clock
// skew between canary and backend) and signing is not per request.
type jwtMinter struct {
	key           []byte
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
	if m.current != "" && now.Before(m.renewAt) {
		return m.current, nil
	}
	claims, err := json.Marshal(jwtClaims{Iss: m.iss, Aud: m.aud, Sub: m.sub, Iat: now.Unix(), Exp: now.Add(m.ttl).Unix()})
	if err != nil {
		return "", fmt.Errorf("jwt claims: %w", err)
	}
	m.current = signHS256(m.key, []byte(`{"alg":"HS256","typ":"JWT"}`), claims)
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
