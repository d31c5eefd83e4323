package authn

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(buf *syncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Debug})
}

func TestUserDBReloadKeepsOldSetOnError(t *testing.T) {
	k := newTestKey(t, "")
	path := writeUsers(t, t.TempDir(), `user "alice" {
  role = "applicant"
  keys = ["`+k.line+`"]
}
`)
	var logs syncBuffer
	db, err := NewUserDB(path, testLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := db.Lookup("alice"); !ok {
		t.Fatal("alice missing")
	}
	os.WriteFile(path, []byte(`user "bob" { role = }`), 0o600)
	if err := db.Reload(); err == nil {
		t.Fatal("invalid file accepted")
	}
	if _, ok := db.Lookup("alice"); !ok {
		t.Fatal("old set dropped after a failed reload")
	}
	if !strings.Contains(logs.String(), "reload failed") {
		t.Errorf("failure not logged: %s", logs.String())
	}
	os.WriteFile(path, []byte(`user "bob" { role = "hr" }`), 0o600)
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.Lookup("alice"); ok {
		t.Error("alice still there")
	}
	if _, ok := db.Lookup("bob"); !ok {
		t.Error("bob missing")
	}
	if _, err := NewUserDB(path+".missing", nil); err == nil {
		t.Error("missing file accepted at start")
	}
}

func TestUserDBWatch(t *testing.T) {
	path := writeUsers(t, t.TempDir(), `user "alice" { role = "applicant" }`)
	db, err := NewUserDB(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go db.Watch(ctx, 5*time.Millisecond)

	set := db.Users().Clone()
	set.Add(&User{Name: "bob", Role: "hr"})
	if err := SaveUsers(path, set); err != nil { // atomic rename, like the CLI
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := db.Lookup("bob"); return ok })

	// A broken file is ignored; the next good one is picked up.
	os.WriteFile(path, []byte("garbage {"), 0o600)
	time.Sleep(30 * time.Millisecond)
	if _, ok := db.Lookup("bob"); !ok {
		t.Fatal("broken file replaced the users")
	}
	os.WriteFile(path, []byte(`user "carol" { role = "partner" }`+"\n"), 0o600)
	waitFor(t, func() bool { _, ok := db.Lookup("carol"); return ok })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
