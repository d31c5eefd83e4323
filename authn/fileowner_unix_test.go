//go:build unix

package authn

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Saving the users file as root keeps its owner and group, each on its own:
// the gateway user must still be able to read it.
func TestSaveUsersKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	const other = 54321
	for name, ids := range map[string][2]int{
		"owner only": {other, os.Getegid()},
		"group only": {os.Geteuid(), other},
	} {
		path := filepath.Join(t.TempDir(), "users.hcl")
		if err := SaveUsers(path, NewUserSet()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, ids[0], ids[1]); err != nil {
			t.Fatal(err)
		}
		if err := SaveUsers(path, NewUserSet()); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != ids[0] || int(st.Gid) != ids[1] {
			t.Errorf("%s: saved file owned by %d:%d, want %d:%d", name, st.Uid, st.Gid, ids[0], ids[1])
		}
	}
}
