//go:build linux || darwin

package localstore

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

func setXattr(f *os.File, name string, val []byte) error {
	err := unix.Fsetxattr(int(f.Fd()), name, val, 0)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return errNoXattr
	}
	return err
}

func getXattr(f *os.File, name string) ([]byte, error) {
	buf := make([]byte, 64)
	n, err := unix.Fgetxattr(int(f.Fd()), name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
