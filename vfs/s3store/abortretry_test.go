package s3store_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// unreachableAborts answers a multipart upload normally but refuses the
// first failAborts AbortMultipartUpload calls with 503, like a store that
// is away when the upload fails and comes back later.
type unreachableAborts struct {
	failAborts int

	mu       sync.Mutex
	attempts int
	aborted  bool
}

func (f *unreachableAborts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	io.Copy(io.Discard, r.Body)
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>up1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPut && q.Has("partNumber"):
		w.Header().Set("ETag", `"p"`)
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		f.mu.Lock()
		defer f.mu.Unlock()
		f.attempts++
		if f.attempts <= f.failAborts {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<Error><Code>ServiceUnavailable</Code><Message>away</Message></Error>`)
			return
		}
		f.aborted = true
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "unexpected", http.StatusNotImplemented)
	}
}

// An abort that fails because the store is unreachable is reported at once
// and then retried in the background, so the multipart upload does not
// stay pending once the store is back.
func TestAbortRetriedAfterStoreReturns(t *testing.T) {
	f := &unreachableAborts{failAborts: 4} // more than the SDK's own 3 attempts
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	s, err := s3store.New(t.Context(), s3store.Config{
		Bucket: "b", Region: "us-east-1", Endpoint: srv.URL, PathStyle: true,
		AccessKeyID: "AKIAFAKE", SecretAccessKey: "fake-secret", PartSize: 5 << 20, Concurrency: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	up, err := s.Create(t.Context(), "k", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for range 12 { // two parts handed off: the multipart upload exists
		if _, err := up.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := up.Abort(t.Context()); err == nil {
		t.Fatal("abort reported success while the store refused it")
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the failing abort held the caller for %s", d)
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		f.mu.Lock()
		done, n := f.aborted, f.attempts
		f.mu.Unlock()
		if done {
			t.Logf("aborted on attempt %d, %s after the first failure", n, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("multipart upload never aborted (%d attempts)", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
