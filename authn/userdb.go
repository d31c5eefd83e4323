package authn

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// UserDB is the live users file. Lookups read an immutable snapshot through
// an atomic pointer, so a reload never blocks or half-affects a login in
// progress: it only changes what new logins see.
type UserDB struct {
	path string
	log  hclog.Logger
	cur  atomic.Pointer[UserSet]

	mu   sync.Mutex  // serializes Reload
	seen os.FileInfo // file last tried (loaded or rejected), guarded by mu
}

// NewUserDB loads path; an invalid file is an error (the gateway must not
// start without users it can trust).
func NewUserDB(path string, log hclog.Logger) (*UserDB, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	set, fi, err := loadUsersFile(path)
	if err != nil {
		return nil, err
	}
	db := &UserDB{path: path, log: log, seen: fi}
	db.cur.Store(set)
	return db, nil
}

// Path is the users file path.
func (db *UserDB) Path() string { return db.path }

// Users is the current snapshot. Do not modify it; Clone it to edit.
func (db *UserDB) Users() *UserSet { return db.cur.Load() }

// Lookup finds a user in the current snapshot.
func (db *UserDB) Lookup(name string) (*User, bool) {
	if db == nil {
		return nil, false
	}
	return db.cur.Load().Lookup(name)
}

// Reload re-reads the file. If the new file is invalid the old set stays
// in force; the error is logged and returned.
func (db *UserDB) Reload() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	set, fi, err := loadUsersFile(db.path)
	if fi != nil {
		db.seen = fi
	}
	if err != nil {
		db.log.Error("users file reload failed, keeping the previous users", "path", db.path, "error", err)
		return err
	}
	db.cur.Store(set)
	db.log.Info("users file reloaded", "path", db.path, "users", set.Len())
	return nil
}

// Watch polls the file every interval and reloads it when it changed
// (inode, size or mtime). It blocks until ctx is done; run it in a
// goroutine. A file that fails to load is not retried until it changes.
func (db *UserDB) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var statErr string // log a missing file once, not every tick
	var pending os.FileInfo
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(db.path)
		if err != nil {
			if err.Error() != statErr {
				statErr = err.Error()
				db.log.Error("users file unreadable, keeping the previous users", "path", db.path, "error", err)
			}
			continue
		}
		statErr = ""
		if !db.changed(fi) {
			pending = nil
			continue
		}
		// Reload only once the file has looked the same for a whole
		// interval: an editor that truncates and rewrites in place would
		// otherwise be caught half-written (an empty file is a valid file
		// with no users).
		if pending == nil || !sameState(pending, fi) {
			pending = fi
			continue
		}
		pending = nil
		_ = db.Reload() // logged by Reload
	}
}

func sameState(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (db *UserDB) changed(fi os.FileInfo) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	s := db.seen
	// An atomic save renames a new inode into place, so SameFile catches it
	// even when size and mtime happen to match.
	return s == nil || !os.SameFile(s, fi) || s.Size() != fi.Size() || !s.ModTime().Equal(fi.ModTime())
}
