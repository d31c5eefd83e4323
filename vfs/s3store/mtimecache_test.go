package s3store_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// listFake is a bucket of small objects answering ListObjectsV2, HEAD,
// PutObject, CopyObject (setstat) and DELETE, with its own clock, counting
// HEADs. Listings give LastModified in milliseconds (as MinIO), HEADs in
// seconds (HTTP dates), and every answer carries the fake clock's Date.
type listFake struct {
	mu    sync.Mutex
	now   time.Time // the server's clock (Date header)
	objs  map[string]*fakeObj
	heads map[string]int
	// writeLM, if set, is the LastModified of every write instead of now:
	// a write within the same second as the last, as S3 shows it.
	writeLM time.Time
}

type fakeObj struct {
	etag  string
	size  int64
	lm    time.Time
	mtime string // X-Amz-Meta-Mtime, "" = none
}

func newListFake(now time.Time) *listFake {
	return &listFake{now: now, objs: map[string]*fakeObj{}, heads: map[string]int{}}
}

// set stores an object as another tool would, bypassing the gateway.
func (f *listFake) set(key, body string, lm time.Time, mtime string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[key] = &fakeObj{etag: etagOf(body), size: int64(len(body)), lm: lm, mtime: mtime}
}

func (f *listFake) obj(key string) fakeObj {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.objs[key]
}

func (f *listFake) headCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.heads {
		n += c
	}
	return n
}

func etagOf(body string) string {
	sum := md5.Sum([]byte(body))
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func (f *listFake) writeTime() time.Time {
	if !f.writeLM.IsZero() {
		return f.writeLM
	}
	return f.now
}

func (f *listFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Date", f.now.UTC().Format(http.TimeFormat))
	key := strings.TrimPrefix(r.URL.Path, "/b/")
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && q.Get("list-type") == "2":
		var keys []string
		for k := range f.objs {
			if strings.HasPrefix(k, q.Get("prefix")) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		fmt.Fprintf(w, `<ListBucketResult><Name>b</Name><KeyCount>%d</KeyCount><IsTruncated>false</IsTruncated>`, len(keys))
		for _, k := range keys {
			o := f.objs[k]
			fmt.Fprintf(w, `<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag><Size>%d</Size></Contents>`,
				k, o.lm.UTC().Format("2006-01-02T15:04:05.000Z"), o.etag, o.size)
		}
		fmt.Fprint(w, `</ListBucketResult>`)
	case r.Method == http.MethodHead:
		f.heads[key]++
		o, ok := f.objs[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", o.etag)
		w.Header().Set("Last-Modified", o.lm.UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Length", strconv.FormatInt(o.size, 10))
		if o.mtime != "" {
			w.Header().Set("X-Amz-Meta-Mtime", o.mtime)
		}
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		src, _ := url.PathUnescape(r.Header.Get("X-Amz-Copy-Source"))
		o, ok := f.objs[strings.TrimPrefix(strings.TrimPrefix(src, "/"), "b/")]
		if !ok || r.Header.Get("X-Amz-Copy-Source-If-Match") != o.etag {
			w.WriteHeader(http.StatusPreconditionFailed)
			fmt.Fprint(w, `<Error><Code>PreconditionFailed</Code><Message>no</Message></Error>`)
			return
		}
		// Same bytes, so the same ETag (SSE-S3 single part).
		c := *o
		c.lm = f.writeTime()
		if r.Header.Get("X-Amz-Metadata-Directive") == "REPLACE" {
			c.mtime = r.Header.Get("X-Amz-Meta-Mtime")
		}
		f.objs[key] = &c
		fmt.Fprintf(w, `<CopyObjectResult><ETag>%s</ETag><LastModified>%s</LastModified></CopyObjectResult>`,
			c.etag, c.lm.UTC().Format("2006-01-02T15:04:05.000Z"))
	case r.Method == http.MethodPut:
		o := &fakeObj{etag: etagOf(string(body)), size: int64(len(body)), lm: f.writeTime(), mtime: r.Header.Get("X-Amz-Meta-Mtime")}
		f.objs[key] = o
		w.Header().Set("ETag", o.etag)
	case r.Method == http.MethodDelete:
		delete(f.objs, key)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusNotImplemented)
	}
}

func listFakeStore(t *testing.T, f *listFake, cacheSize int) *s3store.Store {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	s, err := s3store.New(t.Context(), s3store.Config{
		Bucket: "b", Region: "us-east-1", Endpoint: srv.URL, PathStyle: true,
		AccessKeyID: "AKIAFAKE", SecretAccessKey: "fake-secret", MTimeCache: cacheSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// list returns the MTimes of a listing of d/ and the HEADs it cost.
func (f *listFake) list(t *testing.T, s *s3store.Store) (map[string]time.Time, int) {
	t.Helper()
	before := f.headCount()
	p, err := s.List(t.Context(), vfs.ListOptions{Prefix: "d/", Recursive: true, MTimes: true})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, e := range p.Entries {
		out[e.Key] = e.MTime
	}
	return out, f.headCount() - before
}

var (
	t0 = time.Date(2026, 1, 2, 3, 4, 5, 123e6, time.UTC) // a write; listings show the milliseconds
	m1 = time.Unix(1577934245, 0)
	m2 = time.Unix(1577934299, 0)
)

// Listing unchanged objects again costs no HEAD, and serves the same times;
// a store without a cache heads every time.
func TestFakeListMTimeCached(t *testing.T) {
	for _, size := range []int{0, -1} {
		f := newListFake(t0.Add(time.Minute))
		for i := range 50 {
			f.set(fmt.Sprintf("d/%02d", i), "x", t0, "1577934245")
		}
		f.set("d/plain", "y", t0, "") // no time of its own: a cached "none"
		s := listFakeStore(t, f, size)
		first, n := f.list(t, s)
		if n != 51 || !first["d/07"].Equal(m1) || !first["d/plain"].IsZero() {
			t.Fatalf("cache %d: first listing: %d HEADs, d/07 %v, d/plain %v; want 51, %v, none", size, n, first["d/07"], first["d/plain"], m1)
		}
		again, n := f.list(t, s)
		want := map[int]int{0: 0, -1: 51}[size]
		if n != want {
			t.Errorf("cache %d: second listing of unchanged objects: %d HEADs; want %d", size, n, want)
		}
		if fmt.Sprint(again) != fmt.Sprint(first) {
			t.Errorf("cache %d: second listing %v; want %v", size, again, first)
		}
	}
}

// Every change another tool makes shows a new version in the listing (a
// setstat copy a new LastModified, an overwrite a new ETag or size), so the
// cached time is not served for it.
func TestFakeListMTimeExternalChange(t *testing.T) {
	f := newListFake(t0.Add(time.Minute))
	f.set("d/copy", "x", t0, "1577934245")
	f.set("d/etag", "x", t0, "1577934245")
	f.set("d/size", "x", t0, "1577934245")
	s := listFakeStore(t, f, 0)
	f.list(t, s)
	f.set("d/copy", "x", t0.Add(time.Second), "1577934299") // same bytes, copied a second later
	f.set("d/etag", "z", t0, "1577934299")
	f.set("d/size", "xx", t0, "1577934299")
	got, n := f.list(t, s)
	for _, k := range []string{"d/copy", "d/etag", "d/size"} {
		if !got[k].Equal(m2) {
			t.Errorf("%s changed by another tool: listed %v; want %v", k, got[k], m2)
		}
	}
	if n != 3 {
		t.Errorf("%d HEADs for 3 changed objects; want 3", n)
	}
}

// The gateway's own writes drop the key's cached time even when the
// listing shows the same version (S3's LastModified has whole seconds: a
// setstat in the same second as the PUT keeps ETag, size and LastModified).
func TestFakeListMTimeOwnWrites(t *testing.T) {
	f := newListFake(t0.Add(time.Minute))
	for _, k := range []string{"d/setstat", "d/upload", "d/copy", "d/delete"} {
		f.set(k, "x", t0, "1577934245")
	}
	f.set("src", "x", t0, "1577934299")
	s := listFakeStore(t, f, 0)
	if _, n := f.list(t, s); n != 4 {
		t.Fatalf("first listing: %d HEADs; want 4", n)
	}
	f.writeLM = t0 // every write lands in the same second
	if err := s.SetMTime(t.Context(), "d/setstat", m2); err != nil {
		t.Fatal(err)
	}
	up, err := s.Create(t.Context(), "d/upload", vfs.CreateOptions{SizeHint: 1})
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("x"))
	up.SetMTime(m2)
	if err := up.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Copy(t.Context(), "src", "d/copy"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), "d/delete"); err != nil {
		t.Fatal(err)
	}
	f.set("d/delete", "x", t0, "1577934299") // re-created by another tool
	for _, k := range []string{"d/setstat", "d/upload", "d/copy", "d/delete"} {
		if o := f.obj(k); o.lm != t0 || o.etag != etagOf("x") || o.mtime != "1577934299" {
			t.Fatalf("fake: %s is %+v; want the same version with the new time", k, o)
		}
	}
	got, _ := f.list(t, s)
	for _, k := range []string{"d/setstat", "d/upload", "d/copy", "d/delete"} {
		if !got[k].Equal(m2) {
			t.Errorf("%s after the gateway wrote it: listed %v; want %v (a stale cached time)", k, got[k], m2)
		}
	}
}

// A HEAD answered within the second after the object's LastModified second
// is not cached: another write in that same second (by another gateway,
// say) would show the same ETag, size and LastModified in a listing.
func TestFakeListMTimeSettle(t *testing.T) {
	f := newListFake(t0.Add(time.Second)) // the server's clock: next second
	f.set("d/new", "x", t0, "1577934245")
	s := listFakeStore(t, f, 0)
	f.list(t, s)
	f.set("d/new", "x", t0, "1577934299") // another tool's setstat in the same second
	got, n := f.list(t, s)
	if n != 1 || !got["d/new"].Equal(m2) {
		t.Errorf("object written 1 s before: second listing %d HEADs, time %v; want 1 HEAD and %v", n, got["d/new"], m2)
	}
	f.mu.Lock()
	f.now = t0.Add(2 * time.Second)
	f.mu.Unlock()
	f.list(t, s)
	if _, n := f.list(t, s); n != 0 {
		t.Errorf("object 2 s old listed again: %d HEADs; want 0 (cached)", n)
	}
}

// The cache stays within its size, and still serves what fits.
func TestFakeListMTimeBounded(t *testing.T) {
	f := newListFake(t0.Add(time.Minute))
	for i := range 30 {
		f.set(fmt.Sprintf("d/%02d", i), "x", t0, "1577934245")
	}
	s := listFakeStore(t, f, 10)
	f.list(t, s)
	if _, n := f.list(t, s); n < 20 {
		t.Errorf("30 objects, cache of 10: second listing %d HEADs; want at least 20", n)
	}
	if n := s.MTimeCacheLen(); n > 10 {
		t.Errorf("cache holds %d entries; limit 10", n)
	}
}
