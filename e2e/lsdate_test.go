package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// lsDate is the date column OpenSSH's sftp-server prints in a long name
// (`ls -l`), and so the gateway: strftime "%b %e %H:%M" for an mtime in the
// last (365*24*60*60)/2 seconds up to now, "%b %e  %Y" otherwise, in this
// process's time zone (the in-process gateway's). Every date-dependent test
// takes its expected date from here, never from time.Now() alone.
func lsDate(mtime, now time.Time) string {
	m, n := mtime.Unix(), now.Unix()
	if n-(365*24*60*60)/2 < m && n >= m {
		return mtime.Local().Format("Jan _2 15:04")
	}
	return mtime.Local().Format("Jan _2  2006")
}

// lsFileLine is the gateway's long name for a file object: fixed mode,
// no owner (0), OpenSSH's column widths.
func lsFileLine(name string, size int64, mtime, now time.Time) string {
	return fmt.Sprintf("-rw-r-----    1 0        0        %8d %s %s", size, lsDate(mtime, now), name)
}

// lastModified reads an object's S3 LastModified (UTC, whole seconds).
func lastModified(t *testing.T, c *s3.Client, bucket, key string) time.Time {
	t.Helper()
	out, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("head %s: %v", key, err)
	}
	return *out.LastModified
}
