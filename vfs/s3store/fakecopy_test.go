package s3store_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// copyFake answers what a server-side copy sends: HeadObject of the source,
// CopyObject, or a multipart upload made of UploadPartCopy requests. It
// records every write request's encryption and source condition headers.
type copyFake struct {
	size     int64
	failPart int    // part number answered with 403 (0: none)
	onPart   func() // called as each part copy arrives

	mu       sync.Mutex
	requests []copyReq
}

type copyReq struct {
	what     string // CopyObject, CreateMultipartUpload, UploadPartCopy, Complete, Abort
	sse, kms string
	ifMatch  string
	rng      string
}

func (f *copyFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	io.Copy(io.Discard, r.Body)
	rec := func(what string) {
		f.mu.Lock()
		f.requests = append(f.requests, copyReq{what: what,
			sse:     r.Header.Get("X-Amz-Server-Side-Encryption"),
			kms:     r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"),
			ifMatch: r.Header.Get("X-Amz-Copy-Source-If-Match"),
			rng:     r.Header.Get("X-Amz-Copy-Source-Range")})
		f.mu.Unlock()
	}
	switch {
	case r.Method == http.MethodHead:
		w.Header().Set("Content-Length", strconv.FormatInt(f.size, 10))
		w.Header().Set("ETag", `"src-etag"`)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
	case r.Method == http.MethodPost && q.Has("uploads"):
		rec("CreateMultipartUpload")
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>up1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPut && q.Has("partNumber"):
		rec("UploadPartCopy")
		if f.onPart != nil {
			f.onPart()
		}
		if n, _ := strconv.Atoi(q.Get("partNumber")); n == f.failPart {
			w.WriteHeader(http.StatusForbidden) // not retried by the SDK
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>denied</Message></Error>`)
			return
		}
		fmt.Fprintf(w, `<CopyPartResult><ETag>"p%s"</ETag><LastModified>2006-01-02T15:04:05.000Z</LastModified></CopyPartResult>`, q.Get("partNumber"))
	case r.Method == http.MethodPost && q.Has("uploadId"):
		rec("Complete")
		fmt.Fprint(w, `<CompleteMultipartUploadResult><ETag>"x"</ETag></CompleteMultipartUploadResult>`)
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		rec("Abort")
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		rec("CopyObject")
		fmt.Fprint(w, `<CopyObjectResult><ETag>"c"</ETag><LastModified>2006-01-02T15:04:05.000Z</LastModified></CopyObjectResult>`)
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusNotImplemented)
	}
}

func (f *copyFake) of(what string) []copyReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []copyReq
	for _, r := range f.requests {
		if r.what == what {
			out = append(out, r)
		}
	}
	return out
}

func copyFakeStore(t *testing.T, f *copyFake, sse, kms string) *s3store.Store {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	s, err := s3store.New(t.Context(), s3store.Config{
		Bucket: "b", Region: "us-east-1", Endpoint: srv.URL, PathStyle: true,
		AccessKeyID: "AKIAFAKE", SecretAccessKey: "fake-secret", SSE: sse, KMSKeyID: kms,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A copy carries our encryption settings (SSE-S3, or SSE-KMS with the key)
// and pins the source version it measured, whether it is one CopyObject
// or a multipart copy, where the settings go on CreateMultipartUpload.
func TestFakeCopySSE(t *testing.T) {
	for _, enc := range []struct{ sse, kms string }{{"", ""}, {s3store.SSEKMS, "key-1"}} {
		wantSSE := "AES256"
		if enc.sse != "" {
			wantSSE = enc.sse
		}
		t.Run("single "+wantSSE, func(t *testing.T) {
			f := &copyFake{size: 1000}
			s := copyFakeStore(t, f, enc.sse, enc.kms)
			if err := s.Copy(t.Context(), "a", "b"); err != nil {
				t.Fatal(err)
			}
			cs := f.of("CopyObject")
			if len(cs) != 1 || cs[0].sse != wantSSE || cs[0].kms != enc.kms || cs[0].ifMatch != `"src-etag"` {
				t.Errorf("CopyObject requests %+v; want one with SSE %q, KMS key %q, If-Match the source ETag", cs, wantSSE, enc.kms)
			}
			if n := len(f.of("CreateMultipartUpload")); n != 0 {
				t.Errorf("%d multipart uploads for a small copy", n)
			}
		})
		t.Run("multipart "+wantSSE, func(t *testing.T) {
			f := &copyFake{size: 25 << 20}
			s := copyFakeStore(t, f, enc.sse, enc.kms)
			s.SetCopyLimits(10<<20, 10<<20) // 25 MiB in three part copies
			if err := s.Copy(t.Context(), "a", "b"); err != nil {
				t.Fatal(err)
			}
			cr := f.of("CreateMultipartUpload")
			if len(cr) != 1 || cr[0].sse != wantSSE || cr[0].kms != enc.kms {
				t.Errorf("CreateMultipartUpload %+v; want one with SSE %q, KMS key %q", cr, wantSSE, enc.kms)
			}
			parts := f.of("UploadPartCopy")
			ranges := map[string]bool{}
			for _, p := range parts {
				ranges[p.rng] = true
				if p.ifMatch != `"src-etag"` {
					t.Errorf("part copy %s without the source's If-Match", p.rng)
				}
			}
			for _, r := range []string{"bytes=0-10485759", "bytes=10485760-20971519", "bytes=20971520-26214399"} {
				if !ranges[r] {
					t.Errorf("no part copy of %s (got %v)", r, ranges)
				}
			}
			if len(parts) != 3 || len(f.of("Complete")) != 1 || len(f.of("Abort")) != 0 || len(f.of("CopyObject")) != 0 {
				t.Errorf("requests %+v", f.requests)
			}
		})
	}
}

// A failed part copy aborts the multipart copy: nothing completes and
// nothing is left pending.
func TestFakeMultipartCopyFailureAborts(t *testing.T) {
	f := &copyFake{size: 25 << 20, failPart: 2}
	s := copyFakeStore(t, f, "", "")
	s.SetCopyLimits(10<<20, 10<<20)
	if err := s.Copy(t.Context(), "a", "b"); err == nil {
		t.Fatal("copy with a failing part succeeded")
	}
	if len(f.of("Complete")) != 0 || len(f.of("Abort")) != 1 {
		t.Errorf("complete %d abort %d; want 0 and 1", len(f.of("Complete")), len(f.of("Abort")))
	}
}

// A multipart copy whose context is dropped mid-way still aborts (on a
// detached context): the caller's cancellation must not leave the upload
// pending in the bucket.
func TestFakeMultipartCopyCancelledAborts(t *testing.T) {
	f := &copyFake{size: 25 << 20}
	s := copyFakeStore(t, f, "", "")
	s.SetCopyLimits(10<<20, 10<<20)
	ctx, cancel := context.WithCancel(t.Context())
	f.onPart = func() { cancel() } // the session drops while the first part copies
	err := s.Copy(ctx, "a", "b")
	if err == nil {
		t.Fatal("cancelled copy succeeded")
	}
	if len(f.of("Complete")) != 0 || len(f.of("Abort")) != 1 {
		t.Errorf("complete %d abort %d; want 0 and 1", len(f.of("Complete")), len(f.of("Abort")))
	}
}

// An upload whose context is dropped while nobody calls it (a session
// that vanished mid-transfer) aborts its multipart upload by itself, and
// its later Commit fails instead of completing.
func TestFakeDroppedContextAbortsUpload(t *testing.T) {
	f := &fakeS3{}
	s := fakeStore(t, f, 2)
	ctx, cancel := context.WithCancel(t.Context())
	up, err := s.Create(ctx, "k", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write(make([]byte, 6<<20)); err != nil { // past one part: a multipart upload exists
		t.Fatal(err)
	}
	// The first part is stored and nothing is in flight: only the
	// context's end can start the cleanup now.
	waitUntil(t, "the first part", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.creates == 1 && f.parts == 1 && f.inFlight == 0
	})
	cancel()
	waitUntil(t, "the abort", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.aborts == 1 })
	if err := up.Commit(context.Background()); err == nil {
		t.Errorf("commit after the dropped context: %v; want a failure", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.completes != 0 || f.aborts != 1 {
		t.Errorf("completes %d aborts %d; want 0 and 1", f.completes, f.aborts)
	}
}
