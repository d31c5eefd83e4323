package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/pkg/sftp"

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

// A refusal with a reason (a wrong resume offset) keeps its status code,
// carries the reason as the status message and repeats it on stderr, for
// OpenSSH sftp and psftp, which print only the code.
func TestRefusedReasonShown(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &vfs.RefusedError{Kind: vfs.ErrUnsupported, Reason: "resume must continue at byte 5"})
	st := toStatus(err)
	if !errors.Is(st, sftp.ErrSSHFxOpUnsupported) || st.Error() != "resume must continue at byte 5" {
		t.Errorf("status %v (%T), want op-unsupported with the reason", st, st)
	}
	if st := toStatus(vfs.ErrUnsupported); st != sftp.ErrSSHFxOpUnsupported {
		t.Errorf("plain unsupported: %v", st)
	}
	ch := &fakeChannel{}
	newLimitNotes(ch).tell(err)
	if got := ch.stderr.String(); got != "sftpgw: resume must continue at byte 5\r\n" {
		t.Errorf("stderr %q", got)
	}
}
