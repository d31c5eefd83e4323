package authn

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
)

// attempt is one authentication request as seen by a callback.
type attempt struct {
	id        string // raw SSH session id: key of the connection table
	session   string // audit.SessionID
	user      string // display-safe user name
	method    string
	keyFP     string
	client    netip.AddrPort
	clientOK  bool
	clientStr string
	clientVer string
}

func (a *Authenticator) newAttempt(c ssh.ConnMetadata, method string) *attempt {
	at := &attempt{
		id:        string(c.SessionID()),
		session:   audit.SessionID(c.SessionID()),
		user:      displayName(c.User()),
		method:    method,
		clientVer: displayText(string(c.ClientVersion()), 128),
	}
	at.client, at.clientOK = clientAddr(c.RemoteAddr())
	if at.clientOK {
		at.clientStr = at.client.String()
	} else if c.RemoteAddr() != nil {
		at.clientStr = displayText(c.RemoteAddr().String(), 64)
	}
	return at
}

// failure describes why a request was refused.
type failure struct {
	class, detail string
	user, role    string // the real account, "" if unknown (no per-user counting)
	// count: the failure counts towards lockout. Refusals while banned do
	// not, or a ban would feed itself and never expire under retries.
	count bool
	// mfa: a failed second-factor answer; it also counts towards the
	// account's TOTP lock, whatever the source.
	mfa bool
	// counted, if set, receives which tables the failure was counted in.
	counted *counted
}

// MFALockDetail starts the part of an audit event's detail that says the
// failure locked the account's second factor; alerts match it as mfa_lock.
const MFALockDetail = "second factor locked for "

// fail records a refused request (lockout, audit, log) and returns the
// single error clients see. The ban a failure triggers is noted in its
// audit event so the record shows cause and effect together.
func (a *Authenticator) fail(at *attempt, f failure) error {
	detail := f.detail
	if f.count && at.clientOK {
		out := a.limit.fail(at.client.Addr(), f.user, f.mfa)
		if f.counted != nil {
			*f.counted = out.counted
		}
		if out.IPBan > 0 {
			detail = appendDetail(detail, fmt.Sprintf("source %s banned for %s", sourceKey(at.client.Addr()), out.IPBan))
			a.log.Warn("login ban", "source", sourceKey(at.client.Addr()), "duration", out.IPBan)
		}
		if out.PairBan > 0 {
			detail = appendDetail(detail, fmt.Sprintf("user banned from this source for %s", out.PairBan))
			a.log.Warn("login ban", "user", f.user, "source", sourceKey(at.client.Addr()), "duration", out.PairBan)
		}
		if out.MFALock > 0 {
			detail = appendDetail(detail, fmt.Sprintf(MFALockDetail+"%s after %d failed codes within %s",
				out.MFALock, a.limit.cfg.MaxMFAFailures, a.limit.cfg.MFAWindow))
			a.log.Warn("mfa_lock", "user", f.user, "duration", out.MFALock, "failures", a.limit.cfg.MaxMFAFailures,
				"window", a.limit.cfg.MFAWindow, "last_client", at.clientStr)
		}
		if out.UserBurst {
			// In the event too, so the audit trail and alerts see the burst.
			detail = appendDetail(detail, fmt.Sprintf("login failure burst: %d failures for the user within %s",
				a.limit.cfg.MaxUserFailures, a.limit.cfg.Window))
			a.log.Warn("login_failure_burst", "user", f.user, "failures", a.limit.cfg.MaxUserFailures,
				"window", a.limit.cfg.Window, "last_client", at.clientStr)
		}
	}
	a.audit.Record(audit.Event{
		Time: a.now(), Kind: "auth", Session: at.session, User: at.user, Role: f.role,
		Client: at.clientStr, ClientVer: at.clientVer, KeyFP: at.keyFP, Method: at.method,
		Result: "failure", ErrClass: f.class, Detail: detail,
	})
	a.log.Info("login failed", "user", at.user, "client", at.clientStr, "method", at.method,
		"reason", f.class, "key_fp", at.keyFP, "session", at.session)
	return errDenied
}

// succeed records a login and wraps the principal into Permissions.
func (a *Authenticator) succeed(at *attempt, p *Principal) *ssh.Permissions {
	if st := a.conns.take(at.id); st.keyFailCounted {
		a.limit.forgive(st.keyFailIP, st.keyFailUser, st.keyFail)
	}
	method := strings.Join(p.Methods, ",")
	a.audit.Record(audit.Event{
		Time: a.now(), Kind: "auth", Session: at.session, User: p.User, Role: p.Role,
		Client: at.clientStr, ClientVer: at.clientVer, KeyFP: p.KeyFP, Method: method,
		Result: "ok", Detail: p.DownloadDenied,
	})
	a.log.Info("login", "user", p.User, "role", p.Role, "client", at.clientStr, "method", method,
		"key_fp", p.KeyFP, "session", at.session, "download_denied", p.DownloadDenied)
	return &ssh.Permissions{ExtraData: map[any]any{principalKey{}: p}}
}

func appendDetail(d, more string) string {
	if d == "" {
		return more
	}
	return d + "; " + more
}

// displayName returns a user name safe for logs: valid names as they are,
// anything else (attacker-chosen) quoted, ASCII-escaped and truncated.
func displayName(s string) string {
	if ValidateName(s) == nil {
		return s
	}
	return strconv.QuoteToASCII(truncate(s, 64))
}

// displayText escapes control characters and truncates free text a client
// sent (version string), keeping it printable in logs.
func displayText(s string, n int) string {
	q := strconv.QuoteToASCII(truncate(s, n))
	return q[1 : len(q)-1]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) && len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s + "…"
}
