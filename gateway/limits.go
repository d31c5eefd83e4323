package gateway

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// limitsFilter sits between the SSH channel and pkg/sftp to implement the
// limits@openssh.com extension, which pkg/sftp lacks. Without it OpenSSH
// clients stay at 32 KiB per request; with it they use up to 255 KiB, which
// cuts per-request overhead about eightfold. It appends the extension to the
// server's VERSION packet and answers the client's limits request itself;
// every other byte passes through untouched.
//
// It also holds the protocol rules pkg/sftp does not enforce, so that a
// client cannot make the gateway hold memory without bound: the first
// packet must be INIT (as OpenSSH's sftp-server requires), and no more than
// maxInFlight requests may wait for their answer (pkg/sftp keeps every
// answer behind a slow one in an unbounded list, with its request's buffer).
// A client that sends more simply waits, as with a full TCP window.
type limitsFilter struct {
	rwc io.ReadWriteCloser
	// maxData is announced through limits@openssh.com; 0 offers no limits
	// extension (the filter then only enforces the rules above).
	maxData uint32
	// refused is told of extended requests pkg/sftp answers "unsupported"
	// by itself (copy-data, check-file, md5-hash...), so they are audited.
	refused func(name string)
	// violation is told once when the client breaks the protocol and the
	// session is ended, so it is audited.
	violation func(what string)
	in        inbound
	inited    bool // INIT seen (only the reading goroutine uses it)

	wmu       sync.Mutex
	wcond     *sync.Cond // on wmu: a packet boundary passed, an answer went out, or closed
	outRemain int        // bytes left of the outbound packet being written
	versioned bool       // VERSION packet seen and rewritten
	verBuf    []byte     // VERSION packet being collected
	pending   int        // requests handed to pkg/sftp and not answered yet
	closed    bool       // closed or a write failed: nothing will be answered any more
}

const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201
	limitsExt        = "limits@openssh.com"
	maxSFTPPacket    = 256 * 1024
	// maxInFlight matches OpenSSH's default of 64 outstanding requests
	// (sftp -R): well-behaved clients never wait for it. It bounds what
	// one channel holds in pkg/sftp at 64 requests and answers of at most
	// 256 KiB each.
	maxInFlight = 64
)

// errNoInit ends a channel whose first packet is not INIT.
var errNoInit = errors.New("sftp: request before INIT")

func newLimitsFilter(rwc io.ReadWriteCloser, maxData uint32, refused, violation func(string)) *limitsFilter {
	f := &limitsFilter{rwc: rwc, maxData: maxData, refused: refused, violation: violation, in: inbound{r: rwc}}
	f.wcond = sync.NewCond(&f.wmu)
	return f
}

// handledExtensions reach our handlers (which audit them themselves).
var handledExtensions = map[string]bool{
	"posix-rename@openssh.com": true, "statvfs@openssh.com": true, "hardlink@openssh.com": true,
}

// Close wakes a reader waiting for an answer slot, so it ends too.
func (f *limitsFilter) Close() error {
	err := f.rwc.Close() // first: a Write blocked on the channel holds wmu
	f.wmu.Lock()
	f.closed = true
	f.wcond.Broadcast()
	f.wmu.Unlock()
	return err
}

// Read hands inbound packets to pkg/sftp, consuming limits requests.
func (f *limitsFilter) Read(p []byte) (int, error) {
	for {
		if n, ok, err := f.in.pending(p); ok {
			return n, err
		}
		if err := f.waitSlot(); err != nil {
			return 0, err
		}
		hdr, length, err := f.in.header()
		if err != nil {
			return 0, err
		}
		if !f.inited {
			if length < 1 || hdr[4] != fxpInit {
				if f.violation != nil {
					f.violation("request_before_init")
				}
				return 0, errNoInit
			}
			f.inited = true
		}
		if hdr[4] != fxpExtended || length > 64*1024 || length < 1 {
			f.in.pass(hdr, length)
			f.handed()
			continue
		}
		pkt, err := f.in.whole(hdr, length)
		if err != nil {
			return 0, err
		}
		if id, ok := isLimitsRequest(pkt[5:]); ok && f.maxData > 0 {
			if err := f.inject(f.limitsReply(id)); err != nil {
				return 0, err
			}
			continue
		}
		if name := extendedName(pkt[5:]); f.refused != nil && !handledExtensions[name] {
			f.refused(name)
		}
		f.in.hand(pkt)
		f.handed()
	}
}

// waitSlot blocks while maxInFlight requests wait for their answers.
func (f *limitsFilter) waitSlot() error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for f.pending >= maxInFlight && !f.closed {
		f.wcond.Wait()
	}
	if f.closed {
		return io.EOF
	}
	return nil
}

// handed counts a request given to pkg/sftp, which answers each exactly once.
func (f *limitsFilter) handed() {
	f.wmu.Lock()
	f.pending++
	f.wmu.Unlock()
}

// extendedName returns the request name of an extended packet body.
func extendedName(b []byte) string {
	if len(b) < 8 {
		return ""
	}
	n := int(binary.BigEndian.Uint32(b[4:8]))
	if n > 256 || len(b) < 8+n {
		return ""
	}
	return string(b[8 : 8+n])
}

// isLimitsRequest parses "uint32 id, string name" of an extended request.
func isLimitsRequest(b []byte) (uint32, bool) {
	if len(b) < 8 {
		return 0, false
	}
	id := binary.BigEndian.Uint32(b[:4])
	n := int(binary.BigEndian.Uint32(b[4:8]))
	if n != len(limitsExt) || len(b) < 8+n {
		return 0, false
	}
	return id, string(b[8:8+n]) == limitsExt
}

func (f *limitsFilter) limitsReply(id uint32) []byte {
	b := make([]byte, 0, 4+1+4+32)
	b = binary.BigEndian.AppendUint32(b, 1+4+32)
	b = append(b, fxpExtendedReply)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint64(b, maxSFTPPacket)     // max packet length
	b = binary.BigEndian.AppendUint64(b, uint64(f.maxData)) // max read length
	b = binary.BigEndian.AppendUint64(b, uint64(f.maxData)) // max write length
	// OpenSSH keeps min(64, open handles) requests in flight: 16 x 255 KiB
	// is 4 MiB per session instead of 16, still more than the 2 MiB SSH
	// channel window that bounds throughput on long links anyway.
	b = binary.BigEndian.AppendUint64(b, 16) // max open handles
	return b
}

// inject writes a reply of ours between pkg/sftp's packets, never inside
// one, and never before VERSION. It waits rather than queues, so a client
// cannot pile up replies: the INIT rule guarantees VERSION is on its way.
func (f *limitsFilter) inject(pkt []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for (f.outRemain > 0 || !f.versioned) && !f.closed {
		f.wcond.Wait()
	}
	if f.closed {
		return io.EOF
	}
	_, err := f.rwc.Write(pkt)
	f.failed(err)
	return err
}

// failed marks the channel broken after a write error: pkg/sftp ignores
// such errors, and a reader waiting for an answer would wait for ever.
func (f *limitsFilter) failed(err error) {
	if err != nil {
		f.closed = true
		f.wcond.Broadcast()
	}
}

// answered counts one of pkg/sftp's packets fully written.
func (f *limitsFilter) answered() {
	f.pending--
	f.wcond.Broadcast()
}

// Write passes pkg/sftp's output through, tracking packet boundaries and
// extending the VERSION packet.
func (f *limitsFilter) Write(p []byte) (int, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if !f.versioned {
		f.verBuf = append(f.verBuf, p...)
		if len(f.verBuf) < 5 {
			return len(p), nil
		}
		length := int(binary.BigEndian.Uint32(f.verBuf[:4]))
		if len(f.verBuf) < 4+length {
			return len(p), nil
		}
		pkt := f.verBuf[:4+length]
		rest := f.verBuf[4+length:]
		if pkt[4] == fxpVersion && f.maxData > 0 {
			pkt = binary.BigEndian.AppendUint32(pkt, uint32(len(limitsExt)))
			pkt = append(pkt, limitsExt...)
			pkt = binary.BigEndian.AppendUint32(pkt, 1)
			pkt = append(pkt, '1')
			binary.BigEndian.PutUint32(pkt[:4], uint32(len(pkt)-4))
		}
		f.versioned = true
		f.verBuf = nil
		if _, err := f.rwc.Write(pkt); err != nil {
			f.failed(err)
			return 0, err
		}
		f.answered()
		if len(rest) > 0 {
			if _, err := f.writeTracked(rest); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	return f.writeTracked(p)
}

// writeTracked writes p and follows the length prefixes to know where each
// packet ends. pkg/sftp writes a packet's header (>= 5 bytes) in one call.
func (f *limitsFilter) writeTracked(p []byte) (int, error) {
	n, err := f.rwc.Write(p)
	if err != nil {
		f.failed(err)
		return n, err
	}
	b := p
	for len(b) > 0 {
		if f.outRemain == 0 {
			if len(b) < 4 {
				// Cannot happen with pkg/sftp; stop injecting rather than corrupt.
				f.outRemain = 1 << 30
				return n, nil
			}
			f.outRemain = 4 + int(binary.BigEndian.Uint32(b[:4]))
		}
		step := min(len(b), f.outRemain)
		f.outRemain -= step
		b = b[step:]
		if f.outRemain == 0 {
			f.answered()
		}
	}
	return n, nil
}
