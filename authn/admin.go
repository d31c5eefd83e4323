package authn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// AddUserOptions describes a new account for AddUser.
type AddUserOptions struct {
	Name      string   // "" : generate a pseudonymous name
	Role      string   // role name (not checked against the gateway config)
	Keys      []string // authorized_keys lines, at least one
	MFA       bool     // enroll TOTP: a new secret is generated
	AllowFrom []string // CIDRs or addresses narrowing the role's list
	ExpiresAt time.Time
}

// AddUser validates o, adds the user to set and returns it. For MFA users
// the returned User carries the freshly generated TOTPSecret, which the
// caller shows to the operator once.
func AddUser(set *UserSet, o AddUserOptions) (*User, error) {
	if len(o.Keys) == 0 {
		return nil, errors.New("at least one public key is required")
	}
	name := o.Name
	if name == "" {
		name = GenerateName(set.Has)
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if set.Has(name) {
		return nil, fmt.Errorf("user %q already exists", name)
	}
	u := &User{Name: name, Role: o.Role, ExpiresAt: o.ExpiresAt}
	for i, line := range o.Keys {
		k, err := ParseKey(line)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		u.Keys = append(u.Keys, k)
	}
	for _, c := range o.AllowFrom {
		p, err := ParsePrefix(c)
		if err != nil {
			return nil, err
		}
		u.AllowFrom = append(u.AllowFrom, p)
	}
	if o.MFA {
		s, err := GenerateSecret()
		if err != nil {
			return nil, err
		}
		u.TOTPSecret = s
	}
	if err := set.Add(u); err != nil {
		return nil, err
	}
	added, _ := set.Lookup(name)
	return added, nil
}

// AddKeys adds authorized_keys lines to an existing user.
func AddKeys(set *UserSet, name string, lines []string) (*User, error) {
	u, ok := set.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("no user %q", name)
	}
	if len(lines) == 0 {
		return nil, errors.New("no public key given")
	}
	c := u.clone()
	for i, line := range lines {
		k, err := ParseKey(line)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		c.Keys = append(c.Keys, k)
	}
	if err := set.Replace(c); err != nil {
		return nil, err
	}
	u, _ = set.Lookup(name)
	return u, nil
}

// RotateTOTP gives the user a new TOTP secret (enrolling a user that had
// none) and returns it; the old one stops working at the next reload.
func RotateTOTP(set *UserSet, name string) (string, error) {
	u, ok := set.Lookup(name)
	if !ok {
		return "", fmt.Errorf("no user %q", name)
	}
	s, err := GenerateSecret()
	if err != nil {
		return "", err
	}
	c := u.clone()
	c.TOTPSecret = s
	if err := set.Replace(c); err != nil {
		return "", err
	}
	return s, nil
}

// RemoveUser deletes a user.
func RemoveUser(set *UserSet, name string) error {
	if !set.Remove(name) {
		return fmt.Errorf("no user %q", name)
	}
	return nil
}

// ParseKeyFile returns the keys of an authorized_keys-style file (one per
// line; blank lines and # comments skipped).
func ParseKeyFile(data []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no public key found")
	}
	return out, nil
}

// ParseExpiry accepts a lifetime relative to now ("14d", "2w", "36h") or
// an absolute time (RFC 3339, or a date "2026-12-31" meaning 00:00 UTC).
// The result must lie in the future.
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	var t time.Time
	switch {
	case s == "":
		return time.Time{}, errors.New("empty expiry")
	case strings.HasSuffix(s, "d") || strings.HasSuffix(s, "w"):
		n, err := strconv.Atoi(s[:len(s)-1])
		if err != nil || n <= 0 || n > 3660 {
			return time.Time{}, fmt.Errorf("invalid expiry %q: want e.g. 14d, 2w, 36h or an RFC 3339 time", s)
		}
		if strings.HasSuffix(s, "w") {
			n *= 7
		}
		t = now.Add(time.Duration(n) * 24 * time.Hour)
	default:
		if d, err := time.ParseDuration(s); err == nil {
			t = now.Add(d)
		} else if t, err = time.Parse(time.RFC3339, s); err != nil {
			if t, err = time.Parse(time.DateOnly, s); err != nil {
				return time.Time{}, fmt.Errorf("invalid expiry %q: want e.g. 14d, 2w, 36h or an RFC 3339 time", s)
			}
		}
	}
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("expiry %s is not in the future", t.UTC().Format(time.RFC3339))
	}
	return t.UTC().Truncate(time.Second), nil
}

// UpdateUsers loads the users file, applies fn and saves the result, all
// under a lock file so two concurrent "sftpgw user" commands cannot lose
// each other's changes. With create, a missing file starts empty.
func UpdateUsers(path string, create bool, fn func(*UserSet) error) error {
	lock := path + ".lock"
	lf, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("users file %s is being edited by another command (lock file %s exists; remove it if no sftpgw user command is running)", path, lock)
		}
		return fmt.Errorf("users file lock: %w", err)
	}
	lf.Close()
	defer os.Remove(lock)

	set, err := LoadUsers(path)
	if err != nil {
		if !create || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		set = NewUserSet()
	}
	if err := fn(set); err != nil {
		return err
	}
	return SaveUsers(path, set)
}
