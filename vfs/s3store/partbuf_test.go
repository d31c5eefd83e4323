package s3store

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

func TestPartPoolReuseAndRelease(t *testing.T) {
	const size = 1 << 20
	p := newPartPool(size)
	a, b := p.get(), p.get()
	if cap(a.b) != size || len(a.b) != 0 || cap(b.b) != size {
		t.Fatalf("get: len %d cap %d, want 0 and %d", len(a.b), cap(a.b), size)
	}
	if runtime.GOOS == "linux" && !a.offHeap {
		t.Error("on Linux part buffers should live outside the Go heap")
	}
	a.b = append(a.b, bytes.Repeat([]byte{7}, size)...)
	p.put(a)
	p.put(b)
	// LIFO: the most recently returned buffer comes back first.
	if got := p.get(); got != b {
		t.Error("get did not return the most recently freed buffer")
	}
	p.put(b)
	if got := p.residentBytes(); got != 2*size {
		t.Errorf("resident %d bytes, want %d", got, 2*size)
	}

	// Buffers idle for partIdle give their pages back (off-heap) or are
	// dropped for the GC (heap).
	p.mu.Lock()
	for _, pb := range p.free {
		pb.idle = time.Now().Add(-2 * partIdle)
	}
	p.mu.Unlock()
	p.releaseIdle()
	if got := p.residentBytes(); got != 0 {
		t.Errorf("after release: %d bytes resident, want 0", got)
	}
	if a.offHeap {
		// The mapping stays valid (a straggling reader cannot fault), and
		// reuse starts from an empty buffer.
		c := p.get()
		if c != a && c != b {
			t.Fatal("released off-heap buffer not reused")
		}
		if full := c.b[:cap(c.b)]; !bytes.Equal(full[:16], make([]byte, 16)) {
			t.Errorf("released pages still hold old data: % x", full[:16])
		}
		if len(c.b) != 0 {
			t.Errorf("reused buffer has length %d", len(c.b))
		}
	}

	// A buffer of another size (a small hinted one that grew) is not pooled.
	p.put(&partBuf{b: make([]byte, 0, 10)})
	p.mu.Lock()
	n := len(p.free)
	p.mu.Unlock()
	if n > 1 {
		t.Errorf("odd-sized buffer pooled: %d free", n)
	}
}
