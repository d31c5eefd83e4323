package authn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAddUser(t *testing.T) {
	set := NewUserSet()
	k1, k2 := newTestKey(t, "one"), newTestKey(t, "two")
	u, err := AddUser(set, AddUserOptions{Role: "applicant", Keys: []string{k1.line}})
	if err != nil {
		t.Fatal(err)
	}
	if ValidateName(u.Name) != nil || !strings.HasPrefix(u.Name, "u") || u.TOTPSecret != "" {
		t.Errorf("generated user %+v", u)
	}
	hr, err := AddUser(set, AddUserOptions{Name: "hr-anna", Role: "hr", Keys: []string{k2.line}, MFA: true,
		AllowFrom: []string{"10.0.0.0/8"}, ExpiresAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParseTOTPSecret(hr.TOTPSecret); err != nil {
		t.Errorf("MFA user got no usable secret: %v", err)
	}
	if len(hr.AllowFrom) != 1 || !hr.ExpiresAt.Equal(t0) {
		t.Errorf("options lost: %+v", hr)
	}
	for name, o := range map[string]AddUserOptions{
		"no key":       {Role: "applicant"},
		"dup name":     {Name: "hr-anna", Role: "hr", Keys: []string{newTestKey(t, "").line}},
		"dup key":      {Role: "applicant", Keys: []string{k1.line}},
		"bad role":     {Role: "HR!", Keys: []string{newTestKey(t, "").line}},
		"bad name":     {Name: "X", Role: "hr", Keys: []string{newTestKey(t, "").line}},
		"bad key":      {Role: "hr", Keys: []string{"ssh-rsa AAAA"}},
		"bad cidr":     {Role: "hr", Keys: []string{newTestKey(t, "").line}, AllowFrom: []string{"nope"}},
		"dup key self": {Role: "hr", Keys: []string{k2.line + " x", k2.line}},
	} {
		if _, err := AddUser(set, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if set.Len() != 2 {
		t.Errorf("failed adds changed the set: %d users", set.Len())
	}
	// The operator is told which of several keys is bad, counting from 1.
	_, err = AddUser(set, AddUserOptions{Role: "hr", Keys: []string{newTestKey(t, "").line, "ssh-rsa AAAA"}})
	if err == nil || !strings.HasPrefix(err.Error(), "key 2:") {
		t.Errorf("bad second key: %v", err)
	}
}

func TestAddKeysRotateRemove(t *testing.T) {
	set := NewUserSet()
	k1, k2 := newTestKey(t, ""), newTestKey(t, "")
	u, _ := AddUser(set, AddUserOptions{Name: "alice", Role: "hr", Keys: []string{k1.line}, MFA: true})
	old := u.TOTPSecret
	if _, err := AddKeys(set, "alice", []string{k2.line}); err != nil {
		t.Fatal(err)
	}
	if _, err := AddKeys(set, "alice", []string{k2.line}); err == nil {
		t.Error("same key added twice")
	}
	if _, err := AddKeys(set, "nobody", []string{newTestKey(t, "").line}); err == nil {
		t.Error("key added to a missing user")
	}
	s, err := RotateTOTP(set, "alice")
	if err != nil || s == old {
		t.Fatalf("rotate: %v", err)
	}
	u, _ = set.Lookup("alice")
	if len(u.Keys) != 2 || u.TOTPSecret != s {
		t.Errorf("after add-key/rotate: %d keys", len(u.Keys))
	}
	if err := RemoveUser(set, "alice"); err != nil || set.Has("alice") {
		t.Fatal("not removed")
	}
	// The removed user's keys are free again.
	if _, err := AddUser(set, AddUserOptions{Name: "bob", Role: "hr", Keys: []string{k1.line}}); err != nil {
		t.Errorf("key of removed user still reserved: %v", err)
	}
	if err := RemoveUser(set, "alice"); err == nil {
		t.Error("removing a missing user succeeded")
	}
}

func TestParseKeyFile(t *testing.T) {
	k1, k2 := newTestKey(t, "a"), newTestKey(t, "")
	keys, err := ParseKeyFile([]byte("# my keys\n\n" + k1.line + "\n  " + k2.line + "  \n"))
	if err != nil || len(keys) != 2 || keys[0] != k1.line || keys[1] != k2.line {
		t.Errorf("keys %q, %v", keys, err)
	}
	if _, err := ParseKeyFile([]byte("# nothing\n")); err == nil {
		t.Error("empty key file accepted")
	}
}

func TestParseExpiry(t *testing.T) {
	for in, want := range map[string]time.Time{
		"14d":                  t0.Add(14 * 24 * time.Hour),
		"2w":                   t0.Add(14 * 24 * time.Hour),
		"36h":                  t0.Add(36 * time.Hour),
		"2026-12-31T00:00:00Z": time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
		"2026-12-31":           time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
		"3660d":                t0.Add(3660 * 24 * time.Hour), // the longest in days
	} {
		got, err := ParseExpiry(in, t0)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0d", "-3d", "soon", "2020-01-01", "-1h", "d", "3661d"} {
		if _, err := ParseExpiry(bad, t0); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestUpdateUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.hcl")
	k := newTestKey(t, "")
	if err := UpdateUsers(path, false, func(*UserSet) error { return nil }); err == nil {
		t.Error("missing file without create accepted")
	}
	var name string
	err := UpdateUsers(path, true, func(s *UserSet) error {
		u, err := AddUser(s, AddUserOptions{Role: "applicant", Keys: []string{k.line}})
		if u != nil {
			name = u.Name
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	set, err := LoadUsers(path)
	if err != nil || !set.Has(name) {
		t.Fatalf("user not saved: %v", err)
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Error("lock file left behind")
	}
	// A held lock refuses a second writer.
	os.WriteFile(path+".lock", nil, 0o600)
	if err := UpdateUsers(path, false, func(*UserSet) error { return nil }); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Errorf("concurrent edit not refused: %v", err)
	}
	os.Remove(path + ".lock")
	// A failing edit writes nothing.
	before, _ := os.ReadFile(path)
	UpdateUsers(path, false, func(s *UserSet) error { s.Remove(name); return os.ErrInvalid })
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Error("failed edit was saved")
	}
}
