package gateway

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// longNames rewrites the long names (the `ls -l` lines) of outbound
// SSH_FXP_NAME packets so they read exactly like OpenSSH sftp-server's:
// pkg/sftp prints "Dec 1" where OpenSSH prints "Dec  1", aligns columns
// differently and cannot be told otherwise. Clients show the long name
// verbatim, and scripts written against OpenSSH parse it by columns.
// Every other byte passes through untouched.
type longNames struct {
	io.ReadWriteCloser
	now func() time.Time
	loc *time.Location

	mu     sync.Mutex
	buf    []byte // start of the current packet: its header, or a whole NAME packet
	want   int    // length of the NAME packet being collected (0: none)
	remain int    // bytes of a passed-through packet still to come
}

const (
	fxpName = 104
	// A NAME packet larger than this passes untouched rather than being
	// buffered; pkg/sftp's listings stay far below it.
	maxNamePacket = 1 << 20

	attrSize    = 0x1
	attrUIDGID  = 0x2
	attrPerms   = 0x4
	attrACMTime = 0x8
	attrExt     = 0x80000000
)

func newLongNames(rwc io.ReadWriteCloser, now func() time.Time, loc *time.Location) *longNames {
	return &longNames{ReadWriteCloser: rwc, now: now, loc: loc}
}

// Write follows packet boundaries; pkg/sftp may write a packet's header and
// payload in separate calls, so a NAME packet is gathered whole first.
func (w *longNames) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	total := len(p)
	for len(p) > 0 {
		if w.remain > 0 {
			n := min(len(p), w.remain)
			if _, err := w.ReadWriteCloser.Write(p[:n]); err != nil {
				return 0, err
			}
			w.remain -= n
			p = p[n:]
			continue
		}
		if w.want == 0 {
			if len(w.buf)+len(p) < 5 {
				w.buf = append(w.buf, p...)
				return total, nil
			}
			var hdr [5]byte
			k := copy(hdr[:], w.buf)
			copy(hdr[k:], p)
			size := 4 + int(binary.BigEndian.Uint32(hdr[:4]))
			if hdr[4] != fxpName || size > maxNamePacket {
				if len(w.buf) > 0 {
					if _, err := w.ReadWriteCloser.Write(w.buf); err != nil {
						return 0, err
					}
				}
				w.remain = size - len(w.buf)
				w.buf = w.buf[:0]
				continue
			}
			w.want = size
		}
		n := min(len(p), w.want-len(w.buf))
		w.buf = append(w.buf, p[:n]...)
		p = p[n:]
		if len(w.buf) == w.want {
			out := rewriteNamePacket(w.buf, w.now(), w.loc)
			w.buf, w.want = w.buf[:0], 0
			if _, err := w.ReadWriteCloser.Write(out); err != nil {
				return 0, err
			}
		}
	}
	return total, nil
}

// rewriteNamePacket returns pkt (length, type, id, count, entries) with the
// long name of every entry that carries permissions and times replaced by
// OpenSSH's. Entries without them (realpath replies) keep theirs; anything
// malformed leaves the packet as it was.
func rewriteNamePacket(pkt []byte, now time.Time, loc *time.Location) []byte {
	if len(pkt) < 13 {
		return pkt
	}
	count := binary.BigEndian.Uint32(pkt[9:13])
	out := make([]byte, 13, len(pkt)+int(count)*16)
	copy(out, pkt[:13])
	b := pkt[13:]
	for range count {
		name, rest, ok := sshString(b)
		if !ok {
			return pkt
		}
		long, rest, ok := sshString(rest)
		if !ok {
			return pkt
		}
		attrs, rest, a, ok := parseAttrs(rest)
		if !ok {
			return pkt
		}
		if a.flags&attrPerms != 0 && a.flags&attrACMTime != 0 {
			long = []byte(lsLong(string(name), a, now, loc))
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(name)))
		out = append(out, name...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(long)))
		out = append(out, long...)
		out = append(out, attrs...)
		b = rest
	}
	if len(b) != 0 {
		return pkt
	}
	binary.BigEndian.PutUint32(out[:4], uint32(len(out)-4))
	return out
}

func sshString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b[:4])
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// fileAttrs is the part of an SFTP v3 ATTRS block a long name shows.
type fileAttrs struct {
	flags    uint32
	size     uint64
	uid, gid uint32
	perms    uint32
	mtime    uint32
}

// parseAttrs reads one ATTRS block; raw is its encoding, to copy as is.
func parseAttrs(b []byte) (raw, rest []byte, a fileAttrs, ok bool) {
	p := b
	take := func(n int) []byte {
		if len(p) < n {
			ok = false
			return make([]byte, n)
		}
		v := p[:n]
		p = p[n:]
		return v
	}
	ok = true
	a.flags = binary.BigEndian.Uint32(take(4))
	if a.flags&attrSize != 0 {
		a.size = binary.BigEndian.Uint64(take(8))
	}
	if a.flags&attrUIDGID != 0 {
		a.uid = binary.BigEndian.Uint32(take(4))
		a.gid = binary.BigEndian.Uint32(take(4))
	}
	if a.flags&attrPerms != 0 {
		a.perms = binary.BigEndian.Uint32(take(4))
	}
	if a.flags&attrACMTime != 0 {
		take(4) // atime
		a.mtime = binary.BigEndian.Uint32(take(4))
	}
	if a.flags&attrExt != 0 && ok {
		n := binary.BigEndian.Uint32(take(4))
		for i := uint32(0); i < 2*n && ok; i++ {
			_, r, sok := sshString(p)
			if !sok {
				return nil, nil, a, false
			}
			p = r
		}
	}
	if !ok {
		return nil, nil, a, false
	}
	return b[:len(b)-len(p)], p, a, true
}

// lsLong formats like OpenSSH's ls_file() as sftp-server calls it:
// "%s %3s %-*s %-*s %8llu %s %s" with strmode's eleven characters, the link
// count, owner and group padded to at least 8, the size, and the date.
// Objects have no owner: the numeric ids are shown, 0 when absent, as
// pkg/sftp did.
func lsLong(name string, a fileAttrs, now time.Time, loc *time.Location) string {
	user := strconv.FormatUint(uint64(a.uid), 10)
	group := strconv.FormatUint(uint64(a.gid), 10)
	return fmt.Sprintf("%s %3s %-*s %-*s %8d %s %s", strmode(a.perms), "1",
		max(len(user), 8), user, max(len(group), 8), group,
		a.size, lsTime(int64(a.mtime), now, loc), name)
}

// lsTime is strftime's "%b %e %H:%M" for times in the last half year
// (OpenSSH's (365*24*60*60)/2 seconds) and "%b %e  %Y" otherwise, including
// the future, in loc (sftp-server uses its local time, in the C locale).
func lsTime(mtime int64, now time.Time, loc *time.Location) string {
	t := time.Unix(mtime, 0).In(loc)
	n := now.Unix()
	if n-(365*24*60*60)/2 < mtime && n >= mtime {
		return t.Format("Jan _2 15:04")
	}
	return t.Format("Jan _2  2006")
}

// strmode is BSD strmode(3) as OpenSSH ships it: type, nine permission
// characters with set-id and sticky bits, and a trailing space.
func strmode(m uint32) string {
	var b [11]byte
	switch m & 0o170000 {
	case 0o040000:
		b[0] = 'd'
	case 0o020000:
		b[0] = 'c'
	case 0o060000:
		b[0] = 'b'
	case 0o100000:
		b[0] = '-'
	case 0o120000:
		b[0] = 'l'
	case 0o140000:
		b[0] = 's'
	case 0o010000:
		b[0] = 'p'
	default:
		b[0] = '?'
	}
	rwx := func(i int, r, w, x, special uint32, set, unset byte) {
		b[i], b[i+1] = '-', '-'
		if m&r != 0 {
			b[i] = 'r'
		}
		if m&w != 0 {
			b[i+1] = 'w'
		}
		switch {
		case m&x != 0 && m&special != 0:
			b[i+2] = set
		case m&special != 0:
			b[i+2] = unset
		case m&x != 0:
			b[i+2] = 'x'
		default:
			b[i+2] = '-'
		}
	}
	rwx(1, 0o400, 0o200, 0o100, 0o4000, 's', 'S')
	rwx(4, 0o040, 0o020, 0o010, 0o2000, 's', 'S')
	rwx(7, 0o004, 0o002, 0o001, 0o1000, 't', 'T')
	b[10] = ' '
	return string(b[:])
}
