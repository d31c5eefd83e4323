package s3store

import (
	"sync"
	"time"
)

// partPool recycles the part buffers of one size. Uploads hold most of the
// gateway's memory in these buffers, so where the platform allows they
// live outside the Go heap (see partbuf_linux.go): the garbage collector
// sizes the heap as a multiple of what is live (GOGC), and with part
// buffers on the heap every active upload would cost about twice its
// buffers in RSS. Outside the heap a buffer costs exactly its size while
// in use, and its pages go back to the OS once it has sat idle for
// partIdle.
//
// Buffers are never unmapped, only emptied: a buffer an HTTP transport
// might still read after a failed part (see quarantine) stays valid memory.
type partPool struct {
	size int

	mu      sync.Mutex
	free    []*partBuf // LIFO, so the buffers in rotation stay resident
	pending bool       // a release timer is armed
}

type partBuf struct {
	b        []byte // cap == pool size
	offHeap  bool
	resident bool // pages may be in memory (not released since last use)
	idle     time.Time
}

// partIdle is how long a free buffer keeps its pages. Short enough that an
// idle gateway shrinks back within seconds, long enough that back-to-back
// uploads reuse resident buffers.
const partIdle = 2 * time.Second

func newPartPool(size int) *partPool { return &partPool{size: size} }

// get returns an empty buffer of capacity size.
func (p *partPool) get() *partBuf {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		pb := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		pb.b = pb.b[:0]
		pb.resident = true
		return pb
	}
	p.mu.Unlock()
	if b, ok := allocOffHeap(p.size); ok {
		return &partBuf{b: b[:0], offHeap: true, resident: true}
	}
	return &partBuf{b: make([]byte, 0, p.size), resident: true}
}

// put returns a buffer nobody uses any more.
func (p *partPool) put(pb *partBuf) {
	if pb == nil || cap(pb.b) != p.size {
		return
	}
	pb.idle = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, pb)
	if !p.pending {
		p.pending = true
		time.AfterFunc(partIdle, p.releaseIdle)
	}
}

// quarantine returns a buffer after a failed part, once the transport that
// may still be reading it has surely given up on it.
func (p *partPool) quarantine(pb *partBuf) {
	if pb == nil {
		return
	}
	time.AfterFunc(cleanupTimeout, func() { p.put(pb) })
}

// releaseIdle gives back the pages of buffers idle for partIdle. Heap
// buffers are dropped for the GC instead.
func (p *partPool) releaseIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = false
	keep := p.free[:0]
	for _, pb := range p.free {
		switch {
		case time.Since(pb.idle) < partIdle:
			keep = append(keep, pb)
		case pb.offHeap:
			if pb.resident {
				releaseOffHeap(pb.b[:cap(pb.b)])
				pb.resident = false
			}
			keep = append(keep, pb)
		}
	}
	clear(p.free[len(keep):])
	p.free = keep
	for _, pb := range p.free {
		if pb.resident {
			p.pending = true
			time.AfterFunc(partIdle, p.releaseIdle)
			break
		}
	}
}

// residentBytes is what the free buffers may still hold in memory (tests).
func (p *partPool) residentBytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, pb := range p.free {
		if pb.resident {
			n += p.size
		}
	}
	return n
}
