//go:build unix

package authn

import (
	"os"
	"syscall"
)

// copyOwner gives f the owner of the file it replaces: an operator running
// "sftpgw user" as root must not leave a file the gateway user cannot read.
func copyOwner(f *os.File, old os.FileInfo) error {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid() {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
