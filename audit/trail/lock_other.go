//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package trail

import (
	"os"
	"path/filepath"
)

// lockDir only creates the lock file where flock is unavailable: one
// process per spool directory is then the operator's responsibility.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
}
