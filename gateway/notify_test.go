package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
)

// fakeChannel has a stderr, like an ssh.Channel.
type fakeChannel struct {
	io.ReadWriteCloser
	stderr bytes.Buffer
}

func (c *fakeChannel) Stderr() io.ReadWriter { return &c.stderr }

func TestLimitNotes(t *testing.T) {
	ch := &fakeChannel{}
	n := newLimitNotes(ch)
	n.tell(nil)
	n.tell(vfs.ErrPermission)
	n.tell(errors.New("s3: AccessDenied: bucket policy for arn:aws:s3:::secret")) // never shown
	n.tell(fmt.Errorf("wrapped: %w", &vfs.LimitError{Reason: "upload refused: too big"}))
	if got := ch.stderr.String(); got != "sftpgw: upload refused: too big\r\n" {
		t.Errorf("stderr %q", got)
	}
	for range 2 * maxLimitNotes {
		n.tell(&vfs.LimitError{Reason: "x"})
	}
	if c := strings.Count(ch.stderr.String(), "\n"); c != maxLimitNotes {
		t.Errorf("%d notes, want the cap %d", c, maxLimitNotes)
	}
	// A channel without stderr is fine.
	newLimitNotes(nil).tell(&vfs.LimitError{Reason: "x"})
	var none *limitNotes
	none.tell(&vfs.LimitError{Reason: "x"})
}
