package gateway

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// handshakeEnd words the end of a failed handshake from a fixed set: the
// library's error texts can quote what a client sent, which must not reach
// the audit trail.
func TestHandshakeEndFixedWords(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), "timed out"},
		{io.EOF, "closed by the client"},
		{errors.New("ssh: unexpected message type 5 (expected 50)"), "repeated the ssh-userauth service request"},
		{errors.New("ssh: unexpected message type 94 (expected 50)"), "protocol error"},
		{errors.New("ssh: disconnect, reason 2: too many authentication failures"), "too many authentication attempts"},
		{errors.New("ssh: requested service '\x1b[31mevil' before authenticating"), "connection error"},
	}
	for _, c := range cases {
		got := handshakeEnd(c.err)
		if !strings.Contains(got, c.want) {
			t.Errorf("%q → %q, want %q", c.err, got, c.want)
		}
		if strings.Contains(got, "evil") {
			t.Errorf("client text leaked: %q", got)
		}
	}
}
