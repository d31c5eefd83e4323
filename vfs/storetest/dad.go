package storetest

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// statGate holds the answer of every Stat made after arm until want
// callers have their answer, or until open is called: it makes "check, then delete"
// races happen every time instead of by luck.
type statGate struct {
	vfs.Store
	mu      sync.Mutex
	armed   bool
	want    int
	arrived int
	release chan struct{}
	once    sync.Once
}

func (g *statGate) arm(want int) {
	g.mu.Lock()
	g.armed, g.want, g.release = true, want, make(chan struct{})
	g.mu.Unlock()
}

func (g *statGate) open() { g.once.Do(func() { close(g.release) }) }

func (g *statGate) Stat(ctx context.Context, key string) (vfs.ObjectInfo, error) {
	oi, err := g.Store.Stat(ctx, key)
	g.mu.Lock()
	if !g.armed {
		g.mu.Unlock()
		return oi, err
	}
	g.arrived++
	if g.arrived == g.want {
		g.open()
	}
	ch := g.release
	g.mu.Unlock()
	<-ch
	return oi, err
}

type eventLog struct {
	mu sync.Mutex
	ev []audit.Event
}

func (l *eventLog) Record(e audit.Event) { l.mu.Lock(); l.ev = append(l.ev, e); l.mu.Unlock() }

// testDeleteAfterDownloadOnce: three complete downloads of one file, each
// through its own gateway instance (own registry), closed at the same
// time while every check of the object is held until all three checked.
// The file is deleted exactly once, with one audit event, and no claim
// is left behind.
func testDeleteAfterDownloadOnce(t *testing.T, s vfs.Store) {
	const n = 3
	data := Data(100_000)
	MustPut(t, s, "hr/cv.pdf", data)
	gate := &statGate{Store: s}
	log := &eventLog{}
	ctx := context.Background()
	readers := make([]*vfs.Reader, n)
	for i := range readers {
		fs := vfs.New(vfs.Options{Store: gate, StoreName: "files", Uploads: vfs.NewUploads(), Audit: log,
			Session: vfs.Session{ID: "s", User: "hr1", Role: "hr", Home: "hr/", Perms: vfs.PermAll, DeleteAfterDownload: true}})
		r, err := fs.OpenRead(ctx, "/cv.pdf")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(data))
		if k, err := r.ReadAt(buf, 0); k != len(data) {
			t.Fatalf("read %d: %v", k, err)
		}
		readers[i] = r
	}
	gate.arm(n)
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Close()
			gate.open() // a close that did not check must not hold the others
		}()
	}
	wg.Wait()
	mustNotExist(t, s, "hr/cv.pdf")
	deletes := 0
	for _, e := range log.ev {
		if e.Op == "delete" {
			if e.Result == "ok" && e.Detail == "delete after download" {
				deletes++
			} else {
				t.Errorf("unexpected delete event: %+v", e)
			}
		}
	}
	if deletes != 1 {
		t.Errorf("%d delete-after-download events, want exactly 1", deletes)
	}
	if left := ListAll(t, s, vfs.ListOptions{Prefix: vfs.ClaimPrefix, Recursive: true}); len(left) > 0 &&
		!(len(left) == 1 && strings.HasSuffix(left[0].Key, "/")) {
		t.Errorf("claims left behind: %v", keys(left))
	}
}
