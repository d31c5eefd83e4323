//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package trail

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive, non-blocking flock on dir/lock, so that two
// gateways (or two Trails) never interleave writes to one spool. The kernel
// drops the lock when the process dies, so a crash leaves nothing stale.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit spool %s is in use by another process: %w", dir, err)
	}
	return f, nil
}
