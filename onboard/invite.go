package onboard

import (
	"errors"
	"fmt"
	"time"

	"github.com/sftpgw/sftpgw/authn"
)

// InviteOptions create one account and its bundle.
type InviteOptions struct {
	UsersFile string
	Role      string
	ExpiresAt time.Time // zero: never
	Bundle    Options   // User and Key are filled in by Invite
	Now       func() time.Time
}

// Invite generates a key pair, adds a pseudonymous user holding only the
// public key to the users file, and renders the bundle. The private key is
// returned in the bundle files only; nothing else keeps it.
func Invite(o InviteOptions) (*authn.User, []File, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Role == "" {
		return nil, nil, errors.New("invite: no role")
	}
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	b := o.Bundle
	b.User, b.Key, b.ExpiresAt = "pending", key, o.ExpiresAt
	if err := b.check(); err != nil { // refuse before the users file changes
		return nil, nil, err
	}
	pub, err := AuthorizedKey(key, "invited "+o.Now().UTC().Format(time.DateOnly))
	if err != nil {
		return nil, nil, err
	}
	var added *authn.User
	err = authn.UpdateUsers(o.UsersFile, true, func(set *authn.UserSet) error {
		u, err := authn.AddUser(set, authn.AddUserOptions{Role: o.Role, Keys: []string{pub}, ExpiresAt: o.ExpiresAt})
		added = u
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	b.User = added.Name
	files, err := Build(b)
	if err != nil {
		return nil, nil, errors.Join(err, Revoke(o.UsersFile, added.Name))
	}
	return added, files, nil
}

// Revoke removes an invited user again (a bundle that could not be written
// must not leave a working account behind).
func Revoke(usersFile, name string) error {
	err := authn.UpdateUsers(usersFile, false, func(set *authn.UserSet) error { return authn.RemoveUser(set, name) })
	if err != nil {
		return fmt.Errorf("removing user %s again: %w", name, err)
	}
	return nil
}
