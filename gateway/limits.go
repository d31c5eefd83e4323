package gateway

import (
	"encoding/binary"
	"io"
	"sync"
)

// limitsFilter sits between the SSH channel and pkg/sftp to implement the
// limits@openssh.com extension, which pkg/sftp lacks. Without it OpenSSH
// clients stay at 32 KiB per request; with it they use up to 255 KiB, which
// cuts per-request overhead about eightfold. It appends the extension to the
// server's VERSION packet and answers the client's limits request itself;
// every other byte passes through untouched.
type limitsFilter struct {
	rwc     io.ReadWriteCloser
	maxData uint32
	// refused is told of extended requests pkg/sftp answers "unsupported"
	// by itself (copy-data, check-file, md5-hash...), so they are audited.
	refused  func(name string)
	inRemain int    // bytes left of the inbound packet being passed through
	inBuf    []byte // an inbound packet read whole, not yet handed over

	wmu       sync.Mutex
	outRemain int    // bytes left of the outbound packet being written
	versioned bool   // VERSION packet seen and rewritten
	verBuf    []byte // VERSION packet being collected
	queued    [][]byte
}

const (
	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201
	limitsExt        = "limits@openssh.com"
	maxSFTPPacket    = 256 * 1024
)

func newLimitsFilter(rwc io.ReadWriteCloser, maxData uint32, refused func(string)) *limitsFilter {
	return &limitsFilter{rwc: rwc, maxData: maxData, refused: refused}
}

// handledExtensions reach our handlers (which audit them themselves).
var handledExtensions = map[string]bool{
	"posix-rename@openssh.com": true, "statvfs@openssh.com": true, "hardlink@openssh.com": true,
}

func (f *limitsFilter) Close() error { return f.rwc.Close() }

// Read hands inbound packets to pkg/sftp, consuming limits requests.
func (f *limitsFilter) Read(p []byte) (int, error) {
	for {
		if len(f.inBuf) > 0 {
			n := copy(p, f.inBuf)
			f.inBuf = f.inBuf[n:]
			return n, nil
		}
		if f.inRemain > 0 {
			if len(p) > f.inRemain {
				p = p[:f.inRemain]
			}
			n, err := f.rwc.Read(p)
			f.inRemain -= n
			return n, err
		}
		var hdr [5]byte
		if _, err := io.ReadFull(f.rwc, hdr[:]); err != nil {
			return 0, err
		}
		length := int(binary.BigEndian.Uint32(hdr[:4]))
		if hdr[4] != fxpExtended || length > 64*1024 || length < 1 {
			f.inBuf = append(f.inBuf[:0], hdr[:]...)
			f.inRemain = length - 1
			continue
		}
		pkt := make([]byte, 5+length-1)
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(f.rwc, pkt[5:]); err != nil {
			return 0, err
		}
		if id, ok := isLimitsRequest(pkt[5:]); ok {
			if err := f.inject(f.limitsReply(id)); err != nil {
				return 0, err
			}
			continue
		}
		if name := extendedName(pkt[5:]); f.refused != nil && !handledExtensions[name] {
			f.refused(name)
		}
		f.inBuf = pkt
	}
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

// inject writes a reply of ours between pkg/sftp's packets, never inside one.
func (f *limitsFilter) inject(pkt []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.outRemain > 0 || !f.versioned {
		f.queued = append(f.queued, pkt)
		return nil
	}
	_, err := f.rwc.Write(pkt)
	return err
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
		if pkt[4] == fxpVersion {
			pkt = binary.BigEndian.AppendUint32(pkt, uint32(len(limitsExt)))
			pkt = append(pkt, limitsExt...)
			pkt = binary.BigEndian.AppendUint32(pkt, 1)
			pkt = append(pkt, '1')
			binary.BigEndian.PutUint32(pkt[:4], uint32(len(pkt)-4))
		}
		f.versioned = true
		f.verBuf = nil
		if _, err := f.rwc.Write(pkt); err != nil {
			return 0, err
		}
		if err := f.flushQueued(); err != nil {
			return 0, err
		}
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
	}
	if f.outRemain == 0 {
		return n, f.flushQueued()
	}
	return n, nil
}

func (f *limitsFilter) flushQueued() error {
	for len(f.queued) > 0 {
		if _, err := f.rwc.Write(f.queued[0]); err != nil {
			return err
		}
		f.queued = f.queued[1:]
	}
	return nil
}
