package vfs

import (
	"slices"
	"sync"
)

// Uploads tracks uploads in progress across all sessions of a gateway, so a
// stat of a file being written shows its current size and a remove of it
// can discard it.
type Uploads struct {
	mu    sync.Mutex
	m     map[string][]*Writer // oldest first; several sessions may write one key
	usage map[string]*usage    // per home, for quotas (see quota.go)
}

// NewUploads returns an empty registry.
func NewUploads() *Uploads { return &Uploads{m: map[string][]*Writer{}} }

func uploadID(store, key string) string { return store + "\x00" + key }

func (u *Uploads) add(store, key string, w *Writer) {
	u.mu.Lock()
	id := uploadID(store, key)
	u.m[id] = append(u.m[id], w)
	u.mu.Unlock()
}

// remove forgets w (other uploads of the same key stay).
func (u *Uploads) remove(store, key string, w *Writer) {
	u.mu.Lock()
	defer u.mu.Unlock()
	id := uploadID(store, key)
	ws := slices.DeleteFunc(u.m[id], func(x *Writer) bool { return x == w })
	if len(ws) == 0 {
		delete(u.m, id)
	} else {
		u.m[id] = ws
	}
}

// get returns the newest upload of key in progress, or nil.
func (u *Uploads) get(store, key string) *Writer {
	u.mu.Lock()
	defer u.mu.Unlock()
	ws := u.m[uploadID(store, key)]
	if len(ws) == 0 {
		return nil
	}
	return ws[len(ws)-1]
}

// take removes and returns every upload of key in progress.
func (u *Uploads) take(store, key string) []*Writer {
	u.mu.Lock()
	defer u.mu.Unlock()
	id := uploadID(store, key)
	ws := u.m[id]
	delete(u.m, id)
	return ws
}

// Active returns the number of uploads in progress.
func (u *Uploads) Active() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, ws := range u.m {
		n += len(ws)
	}
	return n
}

// MaxSize is the size of the largest upload in progress (tests, metrics).
func (u *Uploads) MaxSize() int64 {
	u.mu.Lock()
	var ws []*Writer
	for _, l := range u.m {
		ws = append(ws, l...)
	}
	u.mu.Unlock()
	var m int64
	for _, w := range ws {
		m = max(m, w.Size())
	}
	return m
}
