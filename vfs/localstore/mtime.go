package localstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
)

// xattrMTime holds the MTime a client set, as an extended attribute of the
// file or directory: the file's own mtime stays the time the store wrote it
// (which retention ages by, as S3's LastModified), and the attribute moves
// with the file on rename and goes with it on delete.
const xattrMTime = "user.sftpgw.mtime"

// errNoXattr: the file system keeps no user extended attributes.
var errNoXattr = fmt.Errorf("localstore: file times need user extended attributes, which this file system lacks: %w", vfs.ErrUnsupported)

func formatMTime(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

func parseMTime(b []byte) time.Time {
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// readMTime returns name's MTime, zero if none is set or it cannot be read.
func (s *Store) readMTime(name string) time.Time {
	f, err := s.root.Open(name)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	b, err := getXattr(f, xattrMTime)
	if err != nil {
		return time.Time{}
	}
	return parseMTime(b)
}

func writeMTime(f *os.File, t time.Time) error {
	return setXattr(f, xattrMTime, []byte(formatMTime(t)))
}

// SetMTime implements vfs.Store.
func (s *Store) SetMTime(ctx context.Context, key string, t time.Time) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return err
	}
	f, err := s.root.Open(fsName(key))
	if err != nil {
		return mapErr(key, err)
	}
	defer f.Close()
	if err := writeMTime(f, t); err != nil {
		return mtimeErr(key, err)
	}
	return nil
}

func mtimeErr(key string, err error) error {
	if errors.Is(err, errNoXattr) {
		return err
	}
	return &fs.PathError{Op: "setstat", Path: key, Err: err}
}
