package authn

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/vfs"
)

// Principal is the outcome of a successful login: who the session acts as
// and what it may do. The gateway builds the session's VFS from it alone.
type Principal struct {
	User, Role, Storage, Home string      // Home = expanded prefix, "" or ending in "/"
	Perms                     vfs.PermSet // download already removed if the client is outside the role's DownloadFrom
	DownloadDenied            string      // why download was removed ("" if not)
	DeleteAfterDownload       bool
	Limits                    vfs.Limits     // the role's, with the user's overrides
	Client                    netip.AddrPort // from conn.RemoteAddr()
	KeyFP                     string         // ssh.FingerprintSHA256 of the key used
	Methods                   []string       // "publickey", "keyboard-interactive"
	MaxSessions               int            // the role's cap on this user's sessions (0: gateway default, <0: none)
}

// principalKey is the Permissions.ExtraData key. It is unexported, so
// nothing but this package can put a Principal there.
type principalKey struct{}

// buildPrincipal derives the session's rights from user, role and client.
// Download is removed here, once, for clients outside DownloadFrom, so no
// later layer has to remember the address rule.
func buildPrincipal(u *User, r *Role, client netip.AddrPort, keyFP string) (*Principal, error) {
	home, err := r.HomeFor(u.Name)
	if err != nil {
		return nil, err
	}
	p := &Principal{
		User: u.Name, Role: r.Name, Storage: r.Storage, Home: home,
		Perms: r.Perms, DeleteAfterDownload: r.DeleteAfterDownload,
		Client: client, KeyFP: keyFP, Limits: r.Limits, MaxSessions: r.MaxSessions,
	}
	// A user's override replaces the role's number (higher or lower).
	if u.MaxFileSize > 0 {
		p.Limits.MaxFileSize = u.MaxFileSize
	}
	if u.QuotaBytes > 0 {
		p.Limits.QuotaBytes = u.QuotaBytes
	}
	if u.QuotaFiles > 0 {
		p.Limits.QuotaFiles = u.QuotaFiles
	}
	if p.Perms.Has(vfs.OpDownload) && !inPrefixes(r.DownloadFrom, client.Addr()) {
		p.Perms = p.Perms.Without(vfs.OpDownload)
		p.DownloadDenied = fmt.Sprintf("client %s is outside download_from of role %s", client.Addr(), r.Name)
	}
	return p, nil
}

// Principal returns the principal of a connection that completed the
// handshake with callbacks installed by Configure. The result is a copy.
func (a *Authenticator) Principal(perms *ssh.Permissions) (*Principal, error) {
	if perms == nil {
		return nil, errors.New("authn: connection has no permissions (not authenticated by this gateway)")
	}
	p, ok := perms.ExtraData[principalKey{}].(*Principal)
	if !ok || p == nil {
		return nil, errors.New("authn: connection carries no principal (not authenticated by this gateway)")
	}
	c := *p
	c.Methods = append([]string(nil), p.Methods...)
	return &c, nil
}
