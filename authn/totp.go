package authn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// RFC 6238 parameters every authenticator app understands.
const (
	totpDigits = 6
	totpPeriod = 30 // seconds
	totpSkew   = 1  // steps accepted either side of now (clock drift, slow typing)
)

var (
	errBadTOTP      = errors.New("wrong verification code")
	errReplayedTOTP = errors.New("verification code already used")
)

// GenerateSecret returns a new random 160-bit seed in base32 (no padding),
// the length RFC 4226 recommends.
func GenerateSecret() (string, error) {
	key := make([]byte, 20)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(key), nil
}

// URI is the otpauth:// URI authenticator apps import (as text or QR code).
// It contains the secret: show it once to the operator, never log it.
func URI(issuer, user, secret string) string {
	q := url.Values{}
	q.Set("secret", secret)
	q.Set("issuer", issuer)
	q.Set("algorithm", "SHA1")
	q.Set("digits", fmt.Sprint(totpDigits))
	q.Set("period", fmt.Sprint(totpPeriod))
	return "otpauth://totp/" + url.PathEscape(issuer) + ":" + url.PathEscape(user) + "?" + q.Encode()
}

// hotp is RFC 4226 HOTP with HMAC-SHA-1 and dynamic truncation.
func hotp(key []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, v%mod)
}

// totpStep is the RFC 6238 time step containing t.
func totpStep(t time.Time) int64 { return t.Unix() / totpPeriod }

// matchTOTP returns the step within ±totpSkew of now whose code equals code,
// preferring the newest. Every candidate is compared in constant time and
// none is skipped, so timing says nothing about which (if any) matched.
func matchTOTP(key []byte, code string, now time.Time) (steps []int64) {
	code = strings.TrimSpace(code)
	valid := len(code) == totpDigits
	for _, c := range code {
		valid = valid && c >= '0' && c <= '9'
	}
	if !valid {
		code = strings.Repeat("x", totpDigits) // still do the work; never matches
	}
	cur := totpStep(now)
	for s := cur + totpSkew; s >= cur-totpSkew; s-- {
		if s < 0 {
			continue
		}
		want := hotp(key, uint64(s), totpDigits)
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			steps = append(steps, s)
		}
	}
	return steps
}

// totpVerifier checks codes and remembers, per user, the last time step
// accepted: a code (and any older one) is accepted at most once, so a code
// seen over a shoulder or captured by a proxy cannot be replayed within its
// validity window. The state is per process.
type totpVerifier struct {
	mu   sync.Mutex
	last map[string]int64 // user -> newest accepted step
}

func newTOTPVerifier() *totpVerifier { return &totpVerifier{last: map[string]int64{}} }

// verify checks code for user at now: nil, errBadTOTP or errReplayedTOTP.
func (v *totpVerifier) verify(user string, key []byte, code string, now time.Time) error {
	steps := matchTOTP(key, code, now)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.prune(now)
	last, seen := v.last[user]
	for _, s := range steps { // newest first
		if !seen || s > last {
			v.last[user] = s
			return nil
		}
	}
	if len(steps) > 0 {
		return errReplayedTOTP
	}
	return errBadTOTP
}

// prune forgets steps that have left the acceptance window: they can no
// longer match, so remembering them protects nothing. This bounds the map
// by the number of MFA users who logged in during the last minute or so.
func (v *totpVerifier) prune(now time.Time) {
	oldest := totpStep(now) - totpSkew
	for u, s := range v.last {
		if s < oldest {
			delete(v.last, u)
		}
	}
}
