package gateway

import (
	"errors"
	"io"
	"sync"

	"github.com/sftpgw/sftpgw/vfs"
)

// limitNotes repeats limit refusals (file too large, wrong type, quota) on
// the channel's stderr. The SFTP status message carries the reason too,
// but OpenSSH sftp and PuTTY psftp print only the status code ("Failure");
// both print what the server writes to stderr.
type limitNotes struct {
	mu sync.Mutex
	w  io.Writer // nil: no stderr on this channel
	n  int
}

// maxLimitNotes caps the notes per channel: stderr shares the channel's
// flow-control window with SFTP, and a client that never reads it (paramiko)
// would otherwise shrink that window a little with every refusal.
const maxLimitNotes = 100

func newLimitNotes(ch io.ReadWriteCloser) *limitNotes {
	n := &limitNotes{}
	if se, ok := ch.(interface{ Stderr() io.ReadWriter }); ok {
		n.w = se.Stderr()
	}
	return n
}

// tell writes err's text if it is a limit refusal or a RefusedError; others stay as
// they are (their status code says enough, and store errors must not leak).
func (n *limitNotes) tell(err error) {
	var le *vfs.LimitError
	var re *vfs.RefusedError
	var text string
	switch {
	case n == nil || n.w == nil:
		return
	case errors.As(err, &le):
		text = le.Error()
	case errors.As(err, &re):
		text = re.Reason
	default:
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.n >= maxLimitNotes {
		return
	}
	n.n++
	_, _ = io.WriteString(n.w, "sftpgw: "+text+"\r\n")
}
