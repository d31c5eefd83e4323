package s3store_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// fakeS3 is just enough of the S3 multipart API to observe what an upload
// does on the wire: how many parts are in flight, which headers it sends,
// whether it aborts. It needs no MinIO, so these tests always run.
type fakeS3 struct {
	// gate, if set, holds every UploadPart until it is closed (or the
	// client gives up): parts stay in flight for as long as a test needs,
	// whatever the speed of the machine.
	gate     chan struct{}
	failPart int // part number answered with 403 AccessDenied, 0 = none

	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	parts       int
	creates     int
	completes   int
	aborts      int
	puts        int
	noSSE       []string // writes that arrived without SSE
}

// held reports the number of parts in flight.
func (f *fakeS3) held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight
}

// waitUntil polls cond (every millisecond, for up to 10 s: only a broken
// store takes that long) and fails the test if it never holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// gated returns a fake whose parts wait for the returned release (also
// called when the test ends, before the server closes).
func gated() (*fakeS3, func()) {
	f := &fakeS3{gate: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(f.gate) }) }
	return f, release
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	io.Copy(io.Discard, r.Body)
	requireSSE := func(what string) {
		if r.Header.Get("X-Amz-Server-Side-Encryption") != "AES256" {
			f.mu.Lock()
			f.noSSE = append(f.noSSE, what)
			f.mu.Unlock()
		}
	}
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		requireSSE("CreateMultipartUpload")
		f.mu.Lock()
		f.creates++
		f.mu.Unlock()
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>up1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPut && q.Has("partNumber"):
		n, _ := strconv.Atoi(q.Get("partNumber"))
		f.mu.Lock()
		f.inFlight++
		f.maxInFlight = max(f.maxInFlight, f.inFlight)
		f.mu.Unlock()
		if f.gate != nil {
			select {
			case <-f.gate:
			case <-r.Context().Done(): // the client gave up
			}
		}
		f.mu.Lock()
		f.inFlight--
		f.parts++
		f.mu.Unlock()
		if n == f.failPart {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>denied</Message></Error>`)
			return
		}
		w.Header().Set("ETag", fmt.Sprintf(`"etag%d"`, n))
	case r.Method == http.MethodPost && q.Has("uploadId"):
		f.mu.Lock()
		f.completes++
		f.mu.Unlock()
		fmt.Fprint(w, `<CompleteMultipartUploadResult><ETag>"x"</ETag></CompleteMultipartUploadResult>`)
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		f.mu.Lock()
		f.aborts++
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPut:
		requireSSE("PutObject")
		f.mu.Lock()
		f.puts++
		f.mu.Unlock()
		w.Header().Set("ETag", `"e"`)
	default:
		http.Error(w, "unexpected", http.StatusNotImplemented)
	}
}

func fakeStore(t *testing.T, f *fakeS3, concurrency int) *s3store.Store {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	s, err := s3store.New(t.Context(), s3store.Config{
		Bucket: "b", Region: "us-east-1", Endpoint: srv.URL, PathStyle: true,
		AccessKeyID: "AKIAFAKE", SecretAccessKey: "fake-secret",
		PartSize: 5 << 20, Concurrency: concurrency,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Write must block once Concurrency parts are in flight: that is what
// bounds memory per upload. Parts are held by the fake until the test
// sees two in flight, so the limit is reached on any machine; then the
// writer gets 200 ms to overrun it (a correct store never can; a broken
// one shows within that time on an idle machine).
func TestFakeBoundedParts(t *testing.T) {
	f, release := gated()
	s := fakeStore(t, f, 2)
	t.Cleanup(release) // runs before the server's Close
	up, err := s.Create(t.Context(), "k", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for range 8 * 5 {
			if _, err := up.Write(chunk); err != nil {
				done <- err
				return
			}
			written.Add(int64(len(chunk)))
		}
		done <- nil
	}()
	waitUntil(t, "two parts in flight", func() bool { return f.held() == 2 })
	select {
	case err := <-done:
		t.Fatalf("all 40 MiB written (%v) while two parts were held: writes are not bounded", err)
	case <-time.After(200 * time.Millisecond):
	}
	if n, w := f.held(), written.Load(); n != 2 || w > 3*5<<20 {
		t.Fatalf("with 2 parts held: %d parts in flight, %d bytes accepted; want 2 parts and at most 3 parts' worth", n, w)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxInFlight != 2 {
		t.Errorf("max parts in flight %d; want 2", f.maxInFlight)
	}
	if f.parts != 8 || f.creates != 1 || f.completes != 1 || f.aborts != 0 || f.puts != 0 {
		t.Errorf("parts %d creates %d completes %d aborts %d puts %d; want 8 1 1 0 0", f.parts, f.creates, f.completes, f.aborts, f.puts)
	}
	if len(f.noSSE) > 0 {
		t.Errorf("writes without SSE: %v", f.noSSE)
	}
}

// Exactly one part's worth of data is one PutObject, not a multipart upload.
func TestFakeOnePartIsPut(t *testing.T) {
	f := &fakeS3{}
	s := fakeStore(t, f, 0)
	for _, n := range []int{0, 1, 5 << 20} {
		up, _ := s.Create(t.Context(), "k", vfs.CreateOptions{SizeHint: -1})
		up.Write(make([]byte, n))
		if err := up.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if f.puts != 3 || f.creates != 0 || len(f.noSSE) > 0 {
		t.Errorf("puts %d creates %d noSSE %v; want 3 puts, no multipart, SSE everywhere", f.puts, f.creates, f.noSSE)
	}
}

// A failing part fails the upload (later writes return the error) and
// aborts the multipart upload without a Complete.
func TestFakeFailingPart(t *testing.T) {
	f := &fakeS3{failPart: 2}
	s := fakeStore(t, f, 2)
	up, _ := s.Create(t.Context(), "k", vfs.CreateOptions{SizeHint: -1})
	chunk := make([]byte, 1<<20)
	var werr error
	for range 200 {
		if _, werr = up.Write(chunk); werr != nil {
			break
		}
	}
	if !errors.Is(werr, vfs.ErrPermission) {
		t.Fatalf("write after a failed part: %v; want ErrPermission", werr)
	}
	if !strings.HasPrefix(werr.Error(), "storage error: upload part: AccessDenied") {
		t.Errorf("error text %q", werr)
	}
	if _, err := up.Write(chunk); !errors.Is(err, vfs.ErrPermission) {
		t.Errorf("error not sticky: %v", err)
	}
	if err := up.Commit(t.Context()); !errors.Is(err, vfs.ErrPermission) {
		t.Errorf("commit: %v; want the part's error", err)
	}
	if err := up.Abort(t.Context()); err != nil {
		t.Errorf("abort after failed commit: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborts != 1 || f.completes != 0 {
		t.Errorf("aborts %d completes %d; want 1 0", f.aborts, f.completes)
	}
}

// Abort from another goroutine unblocks a Write waiting for a part slot.
// The part in flight is held by the fake and never released: only an
// Abort that cancels it lets the Write return.
func TestFakeAbortUnblocksWrite(t *testing.T) {
	f, release := gated()
	s := fakeStore(t, f, 1)
	t.Cleanup(release)
	up, _ := s.Create(t.Context(), "k", vfs.CreateOptions{SizeHint: -1})
	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := up.Write(chunk); err != nil {
				done <- err
				return
			}
			written.Add(int64(len(chunk)))
		}
	}()
	// Part 1 in flight and part 2 filled: the writer is in (or entering)
	// the Write that waits for the one slot.
	waitUntil(t, "part 1 in flight and part 2 filled", func() bool { return f.held() == 1 && written.Load() >= 2*5<<20 })
	if err := up.Abort(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write succeeded after abort")
		}
	case <-time.After(10 * time.Second): // the held part never ends by itself
		t.Fatal("write still blocked after abort: the part in flight was not cancelled")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborts != 1 || f.completes != 0 {
		t.Errorf("aborts %d completes %d; want 1 0", f.aborts, f.completes)
	}
}
