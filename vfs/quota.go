package vfs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// usage is what one home holds in one store. It is shared by every
// session of a gateway over that home (through Uploads), so two sessions of
// one user cannot each fill the whole quota.
type usage struct {
	mu     sync.Mutex
	loaded bool
	gen    uint64 // bumped on every change, to notice one during a refresh
	bytes  int64  // committed files under the home
	files  int64
	// Uploads in flight: bytes reserved so far, the size of the objects
	// they will replace, and how many will create a new file.
	pendBytes, pendCredit, pendFiles int64
	// Interrupted uploads kept for resume, by key: their bytes count
	// until resumed (then as in flight), discarded or expired, so
	// abandoned uploads cannot hold storage beyond the quota.
	held map[string]heldUpload
}

type heldUpload struct {
	size  int64
	until time.Time // the end of its resume window
}

// heldBytes adds up the kept uploads still within their window, but the
// one at except (an open that will resume or discard it). Called with mu held.
func (u *usage) heldBytes(now time.Time, except string) int64 {
	var n int64
	for k, h := range u.held {
		if k != except && now.Before(h.until) {
			n += h.size
		}
	}
	return n
}

// used is what counts against the byte quota. Called with mu held.
func (u *usage) used(now time.Time, except string) int64 {
	return u.bytes + u.heldBytes(now, except) + u.pendBytes - u.pendCredit
}

// quotaState is an FS's link to its home's usage. The zero value is ready.
type quotaState struct {
	mu        sync.Mutex
	refreshed bool // derived from the store in this session
	u         *usage
}

func usageID(store, home string) string { return store + "\x00" + home }

// usageFor returns the shared usage record of a home, creating it.
func (u *Uploads) usageFor(store, home string) *usage {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.usage == nil {
		u.usage = map[string]*usage{}
	}
	id := usageID(store, home)
	us := u.usage[id]
	if us == nil {
		us = &usage{}
		u.usage[id] = us
	}
	return us
}

// changed applies a committed change of one object to every tracked home
// that contains it: a delete by HR in an applicant's folder frees that
// applicant's quota at once.
func (u *Uploads) changed(store, key string, dBytes, dFiles int64) {
	if strings.HasSuffix(key, "/") {
		return // directory markers are not files
	}
	for _, us := range u.homesOf(store, key) {
		us.mu.Lock()
		us.gen++
		if us.loaded {
			us.bytes = max(0, us.bytes+dBytes)
			us.files = max(0, us.files+dFiles)
		}
		us.mu.Unlock()
	}
}

// homesOf returns the tracked usage records of the homes containing key.
func (u *Uploads) homesOf(store, key string) []*usage {
	u.mu.Lock()
	defer u.mu.Unlock()
	var hit []*usage
	if len(u.usage) > 0 {
		for i := 0; i <= len(key); i++ {
			if i == 0 || key[i-1] == '/' {
				if us := u.usage[usageID(store, key[:i])]; us != nil {
					hit = append(hit, us)
				}
			}
		}
	}
	return hit
}

// setHeld records the interrupted upload kept for resume at key (size 0:
// none any more) in every tracked home that contains it.
func (u *Uploads) setHeld(store, key string, size int64, until time.Time) {
	for _, us := range u.homesOf(store, key) {
		us.mu.Lock()
		us.gen++
		if us.loaded {
			if size > 0 {
				if us.held == nil {
					us.held = map[string]heldUpload{}
				}
				us.held[key] = heldUpload{size: size, until: until}
			} else {
				delete(us.held, key)
			}
		}
		us.mu.Unlock()
	}
}

// loadUsage derives the home's usage from the store once per session (so
// it is right after deletes elsewhere and after a restart) and keeps the
// shared record updated from then on.
func (f *FS) loadUsage(ctx context.Context) (*usage, error) {
	q := &f.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.u == nil {
		q.u = f.uploads.usageFor(f.name, f.sess.Home)
	}
	if q.refreshed {
		return q.u, nil
	}
	for attempt := 0; ; attempt++ {
		q.u.mu.Lock()
		gen := q.u.gen
		q.u.mu.Unlock()
		b, n, err := f.sumHome(ctx)
		if err != nil {
			return nil, err
		}
		held, err := f.heldIn(ctx)
		if err != nil {
			return nil, err
		}
		q.u.mu.Lock()
		// A commit or delete during the listing may or may not be in it:
		// list again rather than guess (give up guessing after 3 tries).
		if q.u.gen == gen || attempt == 2 {
			q.u.bytes, q.u.files, q.u.held, q.u.loaded = b, n, held, true
			q.u.mu.Unlock()
			break
		}
		q.u.mu.Unlock()
	}
	q.refreshed = true
	return q.u, nil
}

// sumHome lists the home recursively and adds up its files.
func (f *FS) sumHome(ctx context.Context) (bytes, files int64, err error) {
	token := ""
	for {
		page, err := f.store.List(ctx, ListOptions{Prefix: f.sess.Home, Recursive: true, Token: token})
		if err != nil {
			return 0, 0, err
		}
		for _, e := range page.Entries {
			// A home at the root must not count the gateway's bookkeeping
			// (manifests would count a pending upload twice).
			if e.IsDir || strings.HasSuffix(e.Key, "/") || reservedKey(e.Key) {
				continue
			}
			bytes += e.Size
			files++
		}
		if page.Next == "" {
			return bytes, files, nil
		}
		token = page.Next
	}
}

// heldIn finds the interrupted uploads kept for resume under the home
// (any user's: they use the home's storage), from their manifests. An
// upload live on this instance is counted by its reservation instead.
func (f *FS) heldIn(ctx context.Context) (map[string]heldUpload, error) {
	if !f.resumeOn() {
		return nil, nil
	}
	held := map[string]heldUpload{}
	token := ""
	for {
		page, err := f.store.List(ctx, ListOptions{Prefix: ResumePrefix + f.sess.Home, Recursive: true, Token: token})
		if err != nil {
			return nil, err
		}
		for _, e := range page.Entries {
			key := strings.TrimPrefix(e.Key, ResumePrefix)
			if e.IsDir || key == e.Key || f.uploads.get(f.name, key) != nil {
				continue
			}
			m, err := readManifest(ctx, f.store, e.Key)
			if err != nil || m == nil || m.Key != key || m.Upload.Size <= 0 {
				continue // unreadable or gone: the sweeper's business
			}
			if until := m.Saved.Add(f.resumeWindow); f.now().Before(until) {
				held[key] = heldUpload{size: m.Upload.Size, until: until}
			}
		}
		if page.Next == "" {
			return held, nil
		}
		token = page.Next
	}
}

// upLimit is one upload's part in the limits and the quota accounting.
type upLimit struct {
	lim      Limits
	name     string // virtual path, for messages
	exists   bool   // replaces an object of oldSize
	oldSize  int64
	sniff    *sniffer
	u        *usage // nil without a quota
	reserved int64  // bytes counted in u.pendBytes
	released bool
	now      func() time.Time
}

// admit checks an upload against the session's limits at open: the file
// type by name, the number of files and a quota already used up.
// resumable is the key of an interrupted upload this open continues or
// discards: its kept bytes are not counted twice.
func (f *FS) admit(ctx context.Context, vp string, exists bool, oldSize int64, resumable string) (*upLimit, error) {
	l := &upLimit{lim: f.sess.Limits, name: vp, exists: exists, now: f.now}
	if exists {
		l.oldSize = oldSize
	}
	if l.lim.IsZero() {
		return l, nil
	}
	t, err := l.lim.typeFor(vp)
	if err != nil {
		return nil, err
	}
	if t != nil {
		l.sniff = &sniffer{t: t}
	}
	if !l.lim.hasQuota() {
		return l, nil
	}
	u, err := f.loadUsage(ctx)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if q := l.lim.QuotaFiles; q > 0 && !exists && u.files+u.pendFiles+1 > q {
		return nil, &LimitError{Reason: fmt.Sprintf("upload refused: you have reached the limit of %d files (delete one to make room)", q)}
	}
	if q := l.lim.QuotaBytes; q > 0 && u.used(f.now(), resumable)-l.oldSize >= q {
		return nil, quotaError(q, u.bytes, u.heldBytes(f.now(), resumable))
	}
	l.u = u
	u.pendCredit += l.oldSize
	if !exists {
		u.pendFiles++
	}
	return l, nil
}

func quotaError(quota, stored, held int64) error {
	kept := ""
	if held > 0 {
		kept = fmt.Sprintf(", %s kept for interrupted uploads: resume or delete them", FormatSize(held))
	}
	return &LimitError{Reason: fmt.Sprintf("upload refused: your storage quota of %s would be exceeded (%s already stored%s)",
		FormatSize(quota), FormatSize(stored), kept)}
}

// reserve accounts for a file that reaches end bytes: the size limit, and
// the quota shared with every other upload in flight.
func (l *upLimit) reserve(end int64) error {
	if l == nil || end <= l.reserved {
		return nil
	}
	if m := l.lim.MaxFileSize; m > 0 && end > m {
		return &LimitError{Reason: fmt.Sprintf("upload refused: %s is larger than the limit of %s per file", base(l.name), FormatSize(m))}
	}
	if l.u == nil || l.lim.QuotaBytes == 0 {
		return nil
	}
	d := end - l.reserved
	l.u.mu.Lock()
	defer l.u.mu.Unlock()
	if now := l.now(); l.u.used(now, "")+d > l.lim.QuotaBytes {
		return quotaError(l.lim.QuotaBytes, l.u.bytes, l.u.heldBytes(now, ""))
	}
	l.u.pendBytes += d
	l.reserved = end
	return nil
}

// accept checks the next in-order bytes p, which start at offset off.
func (l *upLimit) accept(off int64, p []byte) error {
	if l == nil {
		return nil
	}
	if err := l.reserve(off + int64(len(p))); err != nil {
		return err
	}
	return l.sniff.add(p, l.name)
}

// finish is the last check before commit: the type of a short file.
func (l *upLimit) finish() error {
	if l == nil {
		return nil
	}
	return l.sniff.finish(l.name)
}

// committed books a successful upload of size bytes at key.
func (l *upLimit) committed(f *FS, key string, size int64) {
	if l == nil {
		return
	}
	var files int64 = 1
	if l.exists {
		files = 0
	}
	// Book the object before releasing the reservation: in between, the
	// upload is counted twice, never zero times.
	f.uploads.changed(f.name, key, size-l.oldSize, files)
	l.release()
}

// release returns what an upload reserved (after commit or abort).
func (l *upLimit) release() {
	if l == nil || l.released {
		return
	}
	l.released = true
	if l.u == nil {
		return
	}
	l.u.mu.Lock()
	l.u.pendBytes -= l.reserved
	l.u.pendCredit -= l.oldSize
	if !l.exists {
		l.u.pendFiles--
	}
	l.u.mu.Unlock()
}

// renameType refuses renaming a file to a name of another (or no allowed)
// type: the content was checked against the name it was uploaded with.
func (l Limits) renameType(from, to string) error {
	if len(l.AllowedTypes) == 0 {
		return nil
	}
	tt, err := l.typeFor(to)
	if err != nil {
		return &LimitError{Reason: strings.Replace(err.Error(), "upload refused", "rename refused", 1)}
	}
	if ft, err := l.typeFor(from); err != nil || ft != tt {
		return &LimitError{Reason: fmt.Sprintf("rename refused: %s cannot become %s (a file keeps its type)", base(from), base(to))}
	}
	return nil
}
