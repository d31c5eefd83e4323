package gateway

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

type eventList []audit.Event

func (l *eventList) Record(e audit.Event) { *l = append(*l, e) }

func TestConnActivity(t *testing.T) {
	var draining atomic.Bool
	var evs eventList
	a := newConnActivity(&draining, &evs, vfs.Session{ID: "s1", User: "u1", Role: "partner", Client: "192.0.2.1:5"})
	time.Sleep(2 * drainSettle)
	if !a.idleFor(drainSettle) {
		t.Fatal("a new connection without handles is not idle")
	}
	if err := a.open("upload", "/a"); err != nil {
		t.Fatal(err)
	}
	oc := &onceCloser{a: a}
	if a.idleFor(0) {
		t.Error("idle with a handle open")
	}
	draining.Store(true)
	if err := a.open("download", "x/../b"); err != errShuttingDown {
		t.Errorf("open while draining: %v", err)
	}
	if len(evs) != 1 || evs[0].Op != "download" || evs[0].Path != "/b" || evs[0].ErrClass != "shutdown" ||
		evs[0].User != "u1" || evs[0].Result != "error" {
		t.Errorf("refused open audited as %+v", evs)
	}
	if a.handles.Load() != 1 {
		t.Errorf("refused open left %d handles, want 1", a.handles.Load())
	}
	oc.done()
	oc.done() // pkg/sftp may close twice; count once
	if n := a.handles.Load(); n != 0 {
		t.Fatalf("handles %d after close", n)
	}
	if a.idleFor(drainSettle) {
		t.Error("idle at once after the last close: the close reply may not have reached the client")
	}
	time.Sleep(2 * drainSettle)
	if !a.idleFor(drainSettle) {
		t.Error("not idle after the settle time")
	}
	var nilAct *connActivity // handlers without accounting (tests, tools)
	if err := nilAct.open("upload", "/x"); err != nil {
		t.Error(err)
	}
	(&onceCloser{a: nilAct}).done()
}
