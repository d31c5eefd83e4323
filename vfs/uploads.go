package vfs

import "sync"

// Uploads tracks uploads in progress across all sessions of a gateway, so a
// stat of a file being written shows its current size.
type Uploads struct {
	mu    sync.Mutex
	m     map[string]*Writer
	usage map[string]*usage // per home, for quotas (see quota.go)
}

// NewUploads returns an empty registry.
func NewUploads() *Uploads { return &Uploads{m: map[string]*Writer{}} }

func uploadID(store, key string) string { return store + "\x00" + key }

func (u *Uploads) add(store, key string, w *Writer) {
	u.mu.Lock()
	u.m[uploadID(store, key)] = w
	u.mu.Unlock()
}

// remove forgets w, unless a newer upload of the same key replaced it.
func (u *Uploads) remove(store, key string, w *Writer) {
	u.mu.Lock()
	if u.m[uploadID(store, key)] == w {
		delete(u.m, uploadID(store, key))
	}
	u.mu.Unlock()
}

func (u *Uploads) get(store, key string) *Writer {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.m[uploadID(store, key)]
}

// Active returns the number of uploads in progress.
func (u *Uploads) Active() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.m)
}

// MaxSize is the size of the largest upload in progress (tests, metrics).
func (u *Uploads) MaxSize() int64 {
	u.mu.Lock()
	ws := make([]*Writer, 0, len(u.m))
	for _, w := range u.m {
		ws = append(ws, w)
	}
	u.mu.Unlock()
	var m int64
	for _, w := range ws {
		m = max(m, w.Size())
	}
	return m
}
