package authn

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/sftpgw/sftpgw/vfs"
)

// Role is what a user may do once logged in. Roles come from the gateway
// configuration; users refer to them by name.
type Role struct {
	Name    string
	Storage string // storage block name
	// Home is a template: "{name}" is replaced by the user name, e.g.
	// "user/{name}/", "user/", or "" for the bucket root.
	Home                string
	Perms               vfs.PermSet
	MFA                 bool           // public key + TOTP (keyboard-interactive) required
	AllowFrom           []netip.Prefix // login allowed only from these (empty: anywhere)
	DownloadFrom        []netip.Prefix // download allowed only from these (empty: anywhere)
	DeleteAfterDownload bool
	Limits              vfs.Limits // upload limits; users may override the numbers
	// MaxSessions caps one user's concurrent sessions: 0 takes the
	// gateway's max_sessions_per_user, a negative value means no cap.
	MaxSessions int
}

// HomeFor expands the home template for user. The result is "" (bucket
// root) or a clean relative prefix ending in "/": the VFS appends object
// names to it, so a stray "..", "//" or unknown placeholder would silently
// widen or move what the user can reach.
func (r *Role) HomeFor(user string) (string, error) {
	h := strings.ReplaceAll(r.Home, "{name}", user)
	if strings.ContainsAny(h, "{}\\") {
		return "", fmt.Errorf("role %q: home %q: only the {name} placeholder is supported", r.Name, r.Home)
	}
	h = strings.Trim(h, "/") // object keys never start with "/"
	if h == "" {
		return "", nil
	}
	for _, seg := range strings.Split(h, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("role %q: home %q expands to %q, which is not a clean prefix", r.Name, r.Home, h)
		}
	}
	return h + "/", nil
}

// clone copies r so a later change to the caller's value (or its slices)
// cannot race with logins in progress.
func (r *Role) clone() *Role {
	c := *r
	c.AllowFrom = normalizePrefixes(r.AllowFrom)
	c.DownloadFrom = normalizePrefixes(r.DownloadFrom)
	c.Limits.AllowedTypes = append([]string(nil), r.Limits.AllowedTypes...)
	return &c
}
