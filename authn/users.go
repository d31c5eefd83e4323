package authn

import (
	"bytes"
	"crypto/rsa"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// User is one account of the users file. Values handed out by a UserSet or
// UserDB are shared: treat them as read-only.
type User struct {
	Name string
	Role string
	Keys []Key
	// TOTPSecret is the base32 seed (upper case, no padding), "" when not
	// enrolled. It is a secret: never log, audit or print it.
	TOTPSecret string
	AllowFrom  []netip.Prefix // narrows the role's list (both must allow)
	Disabled   bool
	ExpiresAt  time.Time // zero: never
	// Overrides of the role's upload limits (vfs.Limits); 0 keeps the role's.
	MaxFileSize, QuotaBytes, QuotaFiles int64
}

// String and GoString keep the TOTP seed out of any %v / %#v formatting.
func (u *User) String() string   { return fmt.Sprintf("user %s (role %s)", u.Name, u.Role) }
func (u *User) GoString() string { return u.String() }

// Expired reports whether the account has expired at now.
func (u *User) Expired(now time.Time) bool {
	return !u.ExpiresAt.IsZero() && !now.Before(u.ExpiresAt)
}

// FindKey returns the user's key equal to k.
func (u *User) FindKey(k ssh.PublicKey) (Key, bool) {
	m := k.Marshal()
	for _, uk := range u.Keys {
		if bytes.Equal(uk.Marshal(), m) {
			return uk, true
		}
	}
	return Key{}, false
}

func (u *User) clone() *User {
	c := *u
	c.Keys = append([]Key(nil), u.Keys...)
	c.AllowFrom = append([]netip.Prefix(nil), u.AllowFrom...)
	return &c
}

// Key is an authorized public key and the comment it was written with.
type Key struct {
	ssh.PublicKey
	Comment string
}

// Fingerprint is the OpenSSH SHA256 fingerprint, the only form of a key
// that goes into logs and audit events.
func (k Key) Fingerprint() string { return ssh.FingerprintSHA256(k.PublicKey) }

// String is the authorized_keys form: "type base64 [comment]".
func (k Key) String() string {
	s := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.PublicKey)))
	if k.Comment != "" {
		s += " " + k.Comment
	}
	return s
}

// ParseKey parses one authorized_keys line. Options (from=, command=, ...)
// and certificates are refused rather than silently ignored, and weak key
// types are refused outright.
func ParseKey(line string) (Key, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return Key{}, errors.New("empty key")
	}
	pk, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Key{}, fmt.Errorf("not an OpenSSH public key (%v)", err)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return Key{}, errors.New("more than one key in one string")
	}
	if len(opts) != 0 {
		return Key{}, fmt.Errorf("authorized_keys options are not supported (%s); use allow_from", strings.Join(opts, ","))
	}
	if _, ok := pk.(*ssh.Certificate); ok {
		return Key{}, errors.New("certificates are not supported, give the plain public key")
	}
	if err := checkKeyStrength(pk); err != nil {
		return Key{}, err
	}
	return Key{PublicKey: pk, Comment: strings.TrimSpace(comment)}, nil
}

func checkKeyStrength(pk ssh.PublicKey) error {
	switch pk.Type() {
	case ssh.KeyAlgoDSA:
		return errors.New("ssh-dss keys are not accepted")
	case ssh.KeyAlgoRSA:
		cpk, ok := pk.(ssh.CryptoPublicKey)
		if !ok {
			return errors.New("unreadable RSA key")
		}
		if rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); !ok || rk.N.BitLen() < 2048 {
			return errors.New("RSA keys shorter than 2048 bits are not accepted")
		}
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{1,31}$`)

// ValidateName checks a user (or role) name: it becomes part of object keys
// and log lines, so only a small, path-safe alphabet is allowed.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid name %q: want 2-32 characters of a-z, 0-9, '_' or '-', starting with a letter", name)
	}
	return nil
}

// minTOTPSecret is RFC 4226's minimum shared secret length (128 bits).
const minTOTPSecret = 16

// ParseTOTPSecret checks a base32 seed and returns its canonical form
// (upper case, no padding or spaces) and the raw key.
func ParseTOTPSecret(s string) (canonical string, key []byte, err error) {
	c := strings.ToUpper(strings.TrimRight(strings.ReplaceAll(strings.TrimSpace(s), " ", ""), "="))
	key, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(c)
	if err != nil {
		return "", nil, errors.New("totp_secret is not valid base32")
	}
	if len(key) < minTOTPSecret {
		return "", nil, fmt.Errorf("totp_secret is too short (%d bits, need at least %d)", len(key)*8, minTOTPSecret*8)
	}
	return c, key, nil
}

// UserSet is a validated collection of users: unique names and keys that
// are unique across all users (a key identifies exactly one account).
type UserSet struct {
	users map[string]*User
	keys  map[string]string // marshaled key -> user name
}

// NewUserSet returns an empty set.
func NewUserSet() *UserSet {
	return &UserSet{users: map[string]*User{}, keys: map[string]string{}}
}

// Lookup returns the named user.
func (s *UserSet) Lookup(name string) (*User, bool) {
	u, ok := s.users[name]
	return u, ok
}

// Has reports whether name is taken (handy for GenerateName).
func (s *UserSet) Has(name string) bool { _, ok := s.users[name]; return ok }

// Len is the number of users.
func (s *UserSet) Len() int { return len(s.users) }

// Users returns all users sorted by name.
func (s *UserSet) Users() []*User {
	out := make([]*User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Add validates u and adds a copy of it.
func (s *UserSet) Add(u *User) error {
	if err := validateUser(u); err != nil {
		return err
	}
	if s.Has(u.Name) {
		return fmt.Errorf("duplicate user %q", u.Name)
	}
	seen := map[string]bool{}
	for i, k := range u.Keys {
		m := string(k.Marshal())
		if seen[m] {
			return fmt.Errorf("user %q: keys[%d] (%s) is listed twice", u.Name, i, k.Fingerprint())
		}
		seen[m] = true
		if other, ok := s.keys[m]; ok {
			return fmt.Errorf("user %q: keys[%d] (%s) is already a key of user %q", u.Name, i, k.Fingerprint(), other)
		}
	}
	c := u.clone()
	s.users[c.Name] = c
	for m := range seen {
		s.keys[m] = c.Name
	}
	return nil
}

// Remove deletes the named user and reports whether it existed.
func (s *UserSet) Remove(name string) bool {
	u, ok := s.users[name]
	if !ok {
		return false
	}
	for _, k := range u.Keys {
		delete(s.keys, string(k.Marshal()))
	}
	delete(s.users, name)
	return true
}

// Replace swaps the stored user of the same name for a validated copy of u.
func (s *UserSet) Replace(u *User) error {
	old, ok := s.users[u.Name]
	if !ok {
		return fmt.Errorf("no user %q", u.Name)
	}
	s.Remove(u.Name)
	if err := s.Add(u); err != nil {
		if aerr := s.Add(old); aerr != nil { // cannot happen: old was valid here
			panic(aerr)
		}
		return err
	}
	return nil
}

// Clone returns an independent copy (users are copied too).
func (s *UserSet) Clone() *UserSet {
	c := NewUserSet()
	for name, u := range s.users {
		c.users[name] = u.clone()
	}
	for k, v := range s.keys {
		c.keys[k] = v
	}
	return c
}

func validateUser(u *User) error {
	if err := ValidateName(u.Name); err != nil {
		return fmt.Errorf("user: %w", err)
	}
	if err := ValidateName(u.Role); err != nil {
		return fmt.Errorf("user %q: role: %w", u.Name, err)
	}
	for i, k := range u.Keys {
		if k.PublicKey == nil {
			return fmt.Errorf("user %q: keys[%d] is empty", u.Name, i)
		}
		if err := checkKeyStrength(k.PublicKey); err != nil {
			return fmt.Errorf("user %q: keys[%d]: %w", u.Name, i, err)
		}
		if strings.ContainsAny(k.Comment, "\r\n") {
			return fmt.Errorf("user %q: keys[%d]: comment contains a line break", u.Name, i)
		}
	}
	if u.TOTPSecret != "" {
		c, _, err := ParseTOTPSecret(u.TOTPSecret)
		if err != nil {
			return fmt.Errorf("user %q: %w", u.Name, err)
		}
		if c != u.TOTPSecret {
			return fmt.Errorf("user %q: totp_secret is not in canonical form", u.Name)
		}
	}
	for _, p := range u.AllowFrom {
		if !p.IsValid() || p != normalizePrefix(p) {
			return fmt.Errorf("user %q: allow_from %s is not a canonical CIDR", u.Name, p)
		}
	}
	if u.MaxFileSize < 0 || u.QuotaBytes < 0 || u.QuotaFiles < 0 {
		return fmt.Errorf("user %q: max_file_size, quota_bytes and quota_files cannot be negative", u.Name)
	}
	return nil
}
