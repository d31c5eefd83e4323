package authn

import (
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
)

// Unfinished records how a connection that started authentication ended
// without logging in; why is the gateway's fixed description of the end
// (timed out, closed by the client, protocol error...). Each refused
// request already has its own event, but a connection whose key was
// accepted and that then vanished before the TOTP step (a stolen key being
// tested, or paramiko, see docs) left none. Every such connection now
// leaves one, naming the steps it passed and the key that passed them.
// It also forgets the connection's state at once.
func (a *Authenticator) Unfinished(c ssh.ConnMetadata, why string) {
	st := a.conns.take(string(c.SessionID()))
	at := a.newAttempt(c, "")
	ev := audit.Event{
		Time: a.now(), Kind: "connect", Session: at.session, User: at.user, Client: at.clientStr,
		ClientVer: at.clientVer, Result: "error", ErrClass: "auth_incomplete",
		Detail: "connection ended during authentication, no step passed: " + why,
	}
	if p := st.keyStep; p != nil {
		ev.User, ev.Role, ev.KeyFP, ev.Method = p.User, p.Role, p.KeyFP, "publickey"
		ev.Detail = "connection ended during authentication after the public key step passed, before the verification code: " + why
		a.log.Warn("key accepted but the connection ended before the verification code", "user", p.User,
			"client", at.clientStr, "key_fp", p.KeyFP, "why", why)
	}
	a.audit.Record(ev)
}
