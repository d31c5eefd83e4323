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
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// fakeS3 is just enough of the S3 multipart API to observe what an upload
// does on the wire: how many parts are in flight, which headers it sends,
// whether it aborts. It needs no MinIO, so these tests always run.
type fakeS3 struct {
	partDelay time.Duration
	failPart  int // part number answered with 403 AccessDenied, 0 = none

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
		select {
		case <-time.After(f.partDelay):
		case <-r.Context().Done(): // the client gave up
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
// bounds memory per upload.
func TestFakeBoundedParts(t *testing.T) {
	f := &fakeS3{partDelay: 50 * time.Millisecond}
	s := fakeStore(t, f, 2)
	up, err := s.Create(t.Context(), "k", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for range 8 * 5 {
		if _, err := up.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := up.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxInFlight > 2 || f.maxInFlight < 2 {
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
func TestFakeAbortUnblocksWrite(t *testing.T) {
	f := &fakeS3{partDelay: 2 * time.Second}
	s := fakeStore(t, f, 1)
	up, _ := s.Create(t.Context(), "k", vfs.CreateOptions{SizeHint: -1})
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := up.Write(chunk); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // part 1 in flight, Write blocked on part 2
	start := time.Now()
	if err := up.Abort(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write succeeded after abort")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write still blocked after abort")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("abort took %v; want it to cancel the part in flight", d)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborts != 1 || f.completes != 0 {
		t.Errorf("aborts %d completes %d; want 1 0", f.aborts, f.completes)
	}
}
