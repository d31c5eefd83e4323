package s3store

import "golang.org/x/sys/unix"

// allocOffHeap maps size bytes of anonymous memory, outside the Go heap.
// Pages are only backed once written.
func allocOffHeap(size int) ([]byte, bool) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, false // fall back to the heap
	}
	return b, true
}

// releaseOffHeap hands b's pages back to the OS; the mapping stays valid
// and reads as zeros until written again.
func releaseOffHeap(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }
