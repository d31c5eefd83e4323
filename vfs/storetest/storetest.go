// Package storetest is a conformance suite for vfs.Store implementations, so
// the local store used in unit tests and the S3 store behave alike.
//
// Directories are always created with explicit "dir/" markers here: a local
// directory is always a marker, while S3 only has the markers it was given.
package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
)

// PartSize is the multipart part size the suite's sizes are built around.
// Stores with parts (s3store) should be configured with it, so that the
// "part size + 1" and "three parts" cases cross part boundaries.
const PartSize = 5 << 20

// Run runs the suite. newStore must return an empty store for each call;
// subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) vfs.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s vfs.Store)
	}{
		{"StatMissing", testStatMissing},
		{"RoundTrip", testRoundTrip},
		{"NotVisibleBeforeCommit", testNotVisibleBeforeCommit},
		{"RangedRead", testRangedRead},
		{"Abort", testAbort},
		{"FinishedUpload", testFinishedUpload},
		{"Overwrite", testOverwrite},
		{"Exclusive", testExclusive},
		{"ExclusiveRace", testExclusiveRace},
		{"ListPagination", testListPagination},
		{"ListRecursive", testListRecursive},
		{"ListPartialPrefix", testListPartialPrefix},
		{"Delete", testDelete},
		{"Copy", testCopy},
		{"Markers", testMarkers},
		{"SpecialKeys", testSpecialKeys},
		{"MTime", testMTime},
		{"DeleteAfterDownloadOnce", testDeleteAfterDownloadOnce},
		{"SuspendResume", testSuspendResume},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// Data returns n random bytes.
func Data(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Put stores data at key in uneven chunks (so writes straddle part
// boundaries) and commits.
func Put(t testing.TB, s vfs.Store, key string, data []byte, opt vfs.CreateOptions) error {
	t.Helper()
	up, err := s.Create(t.Context(), key, opt)
	if err != nil {
		return err
	}
	if err := write(up, data); err != nil {
		up.Abort(t.Context())
		return err
	}
	return up.Commit(t.Context())
}

// MustPut is Put that fails the test on error.
func MustPut(t testing.TB, s vfs.Store, key string, data []byte) {
	t.Helper()
	if err := Put(t, s, key, data, vfs.CreateOptions{SizeHint: -1}); err != nil {
		t.Fatalf("put %q (%d bytes): %v", key, len(data), err)
	}
}

func write(up vfs.Upload, data []byte) error {
	const chunk = 32<<10 + 7
	for len(data) > 0 {
		n := min(chunk, len(data))
		w, err := up.Write(data[:n])
		if err != nil {
			return err
		}
		if w != n {
			return fmt.Errorf("short write: %d of %d", w, n)
		}
		data = data[n:]
	}
	return nil
}

// Get reads the whole object at key.
func Get(t testing.TB, s vfs.Store, key string) ([]byte, error) {
	t.Helper()
	return ReadRange(t, s, key, 0, -1)
}

// ReadRange reads length bytes at offset.
func ReadRange(t testing.TB, s vfs.Store, key string, off, length int64) ([]byte, error) {
	t.Helper()
	r, err := s.Read(t.Context(), key, off, length)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// ListAll follows a listing through all its pages, checking each page
// respects opt.Limit.
func ListAll(t testing.TB, s vfs.Store, opt vfs.ListOptions) []vfs.ObjectInfo {
	t.Helper()
	var all []vfs.ObjectInfo
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatalf("list %+v: no end after 10000 pages", opt)
		}
		page, err := s.List(t.Context(), opt)
		if err != nil {
			t.Fatalf("list %+v: %v", opt, err)
		}
		if opt.Limit > 0 && len(page.Entries) > opt.Limit {
			t.Fatalf("list %+v: %d entries, more than the limit", opt, len(page.Entries))
		}
		all = append(all, page.Entries...)
		if page.Next == "" {
			return all
		}
		opt.Token = page.Next
	}
}

// keys renders entries as "key" or "key(dir)" for easy comparison.
func keys(es []vfs.ObjectInfo) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
		if e.IsDir {
			out[i] += "(dir)"
		}
	}
	return out
}

func mustNotExist(t testing.TB, s vfs.Store, key string) {
	t.Helper()
	if oi, err := s.Stat(t.Context(), key); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("stat %q = %+v, %v; want ErrNotExist", key, oi, err)
	}
}

func checkContent(t testing.TB, s vfs.Store, key string, want []byte) {
	t.Helper()
	oi, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("stat %q: %v", key, err)
	}
	if oi.Key != key || oi.Size != int64(len(want)) || oi.IsDir || oi.ModTime.IsZero() {
		t.Fatalf("stat %q = %+v; want size %d, a file, a mod time", key, oi, len(want))
	}
	got, err := Get(t, s, key)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q: %d bytes differ from the %d written", key, len(got), len(want))
	}
}

func testStatMissing(t *testing.T, s vfs.Store) {
	mustNotExist(t, s, "missing")
	mustNotExist(t, s, "missing/")
	mustNotExist(t, s, "no/such/key")
	if _, err := s.Read(t.Context(), "missing", 0, -1); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("read missing: %v; want ErrNotExist", err)
	}
	if _, err := s.Read(t.Context(), "missing", 0, 0); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("read 0 bytes of missing: %v; want ErrNotExist", err)
	}
	page, err := s.List(t.Context(), vfs.ListOptions{Prefix: "missing/"})
	if err != nil || len(page.Entries) != 0 || page.Next != "" {
		t.Fatalf("list missing/ = %+v, %v; want empty", page, err)
	}
}

func testRoundTrip(t *testing.T, s vfs.Store) {
	sizes := []struct {
		name string
		size int
		hint bool
	}{
		{"0B", 0, false},
		{"0B-hint", 0, true},
		{"1B", 1, false},
		{"1B-hint", 1, true},
		{"part", PartSize, false},
		{"part+1", PartSize + 1, false},
		{"part+1-hint", PartSize + 1, true},
		{"3parts", 2*PartSize + 4321, false},
	}
	for _, sz := range sizes {
		key := "rt/" + sz.name
		data := Data(sz.size)
		opt := vfs.CreateOptions{SizeHint: -1}
		if sz.hint {
			opt.SizeHint = int64(sz.size)
		}
		if err := Put(t, s, key, data, opt); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		checkContent(t, s, key, data)
	}
}

func testNotVisibleBeforeCommit(t *testing.T, s vfs.Store) {
	data := Data(PartSize + 100) // past the first part
	up, err := s.Create(t.Context(), "nv", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := write(up, data); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, s, "nv")
	if es := ListAll(t, s, vfs.ListOptions{Recursive: true}); len(es) != 0 {
		t.Fatalf("uncommitted upload listed: %v", keys(es))
	}
	if err := up.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkContent(t, s, "nv", data)
}

func testRangedRead(t *testing.T, s vfs.Store) {
	data := Data(1000)
	MustPut(t, s, "r", data)
	MustPut(t, s, "empty", nil)
	cases := []struct {
		key         string
		off, length int64
		want        []byte
	}{
		{"r", 0, 10, data[:10]},
		{"r", 10, -1, data[10:]},
		{"r", 100, 200, data[100:300]},
		{"r", 990, 100, data[990:]},
		{"r", 999, 1, data[999:]},
		{"r", 0, 1000, data},
		{"r", 0, 0, nil},
		{"r", 1000, -1, nil},
		{"r", 1000, 10, nil},
		{"r", 5000, 10, nil},
		{"empty", 0, -1, nil},
		{"empty", 0, 10, nil},
		{"empty", 0, 0, nil},
		{"empty", 3, -1, nil},
	}
	for _, c := range cases {
		got, err := ReadRange(t, s, c.key, c.off, c.length)
		if err != nil {
			t.Fatalf("read %s [%d,+%d): %v", c.key, c.off, c.length, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Fatalf("read %s [%d,+%d): got %d bytes, want %d", c.key, c.off, c.length, len(got), len(c.want))
		}
	}
}

func testAbort(t *testing.T, s vfs.Store) {
	for _, n := range []int{0, 10, 2*PartSize + 1} {
		key := fmt.Sprintf("ab/%d", n)
		up, err := s.Create(t.Context(), key, vfs.CreateOptions{SizeHint: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := write(up, Data(n)); err != nil {
			t.Fatal(err)
		}
		if err := up.Abort(t.Context()); err != nil {
			t.Fatalf("abort %s: %v", key, err)
		}
		if err := up.Abort(t.Context()); err != nil {
			t.Fatalf("second abort %s: %v", key, err)
		}
		if _, err := up.Write([]byte("x")); err == nil {
			t.Fatalf("write after abort of %s succeeded", key)
		}
		if err := up.Commit(t.Context()); err == nil {
			t.Fatalf("commit after abort of %s succeeded", key)
		}
		mustNotExist(t, s, key)
	}
	if es := ListAll(t, s, vfs.ListOptions{Recursive: true}); len(es) != 0 {
		t.Fatalf("aborted uploads listed: %v", keys(es))
	}
}

func testFinishedUpload(t *testing.T, s vfs.Store) {
	up, err := s.Create(t.Context(), "fin", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("data"))
	if err := up.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := up.Abort(t.Context()); err != nil {
		t.Fatalf("abort after commit: %v; want a no-op", err)
	}
	if _, err := up.Write([]byte("more")); err == nil {
		t.Fatal("write after commit succeeded")
	}
	if err := up.Commit(t.Context()); err == nil {
		t.Fatal("second commit succeeded")
	}
	checkContent(t, s, "fin", []byte("data"))
}

func testOverwrite(t *testing.T, s vfs.Store) {
	MustPut(t, s, "o", Data(PartSize+10))
	small := Data(3)
	MustPut(t, s, "o", small)
	checkContent(t, s, "o", small)
	big := Data(PartSize + 20)
	MustPut(t, s, "o", big)
	checkContent(t, s, "o", big)
}

func testExclusive(t *testing.T, s vfs.Store) {
	excl := vfs.CreateOptions{Exclusive: true, SizeHint: -1}
	orig := Data(100)
	if err := Put(t, s, "x", orig, excl); err != nil {
		t.Fatalf("exclusive create of a new key: %v", err)
	}
	for _, n := range []int{5, PartSize + 1} {
		err := Put(t, s, "x", Data(n), excl)
		if !errors.Is(err, vfs.ErrExist) {
			t.Fatalf("exclusive %d-byte create over an existing key: %v; want ErrExist", n, err)
		}
		checkContent(t, s, "x", orig)
	}
	if err := Put(t, s, "big", Data(PartSize+1), excl); err != nil {
		t.Fatalf("exclusive multipart create of a new key: %v", err)
	}
	MustPut(t, s, "d/", nil)
	if err := Put(t, s, "d/", nil, excl); !errors.Is(err, vfs.ErrExist) {
		t.Fatalf("exclusive marker over an existing marker: %v; want ErrExist", err)
	}
}

func testExclusiveRace(t *testing.T, s vfs.Store) {
	const n = 4
	ups := make([]vfs.Upload, n)
	for i := range ups {
		up, err := s.Create(t.Context(), "race", vfs.CreateOptions{Exclusive: true, SizeHint: -1})
		if err != nil {
			t.Fatal(err)
		}
		up.Write([]byte{byte(i)})
		ups[i] = up
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, up := range ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = up.Commit(t.Context())
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("exclusive commits %d and %d both succeeded", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, vfs.ErrExist):
			t.Fatalf("losing exclusive commit: %v; want ErrExist", err)
		}
	}
	if won < 0 {
		t.Fatal("no exclusive commit succeeded")
	}
	checkContent(t, s, "race", []byte{byte(won)})
}

// tree creates d/ with 12 files, a sub-directory with a file and an empty
// sub-directory, and returns the recursive listing it expects.
func tree(t *testing.T, s vfs.Store) []string {
	want := []string{"d/(dir)"}
	MustPut(t, s, "d/", nil)
	for i := range 12 {
		k := fmt.Sprintf("d/f%02d", i)
		MustPut(t, s, k, Data(i))
		want = append(want, k)
	}
	MustPut(t, s, "d/s1/", nil)
	MustPut(t, s, "d/s1/x", []byte("x"))
	MustPut(t, s, "d/s2/", nil)
	// "d/f-" sorts before "d/f0" and "d/s1/" after "d/s1": a store that
	// sorts names instead of keys gets these wrong.
	MustPut(t, s, "d/f-", nil)
	MustPut(t, s, "d/s1-", nil)
	want = append(want, "d/f-", "d/s1-", "d/s1/(dir)", "d/s1/x", "d/s2/(dir)")
	sortKeys(want)
	return want
}

// sortKeys sorts keys() output by key, as S3 does.
func sortKeys(ks []string) {
	slices.SortFunc(ks, func(a, b string) int {
		return strings.Compare(strings.TrimSuffix(a, "(dir)"), strings.TrimSuffix(b, "(dir)"))
	})
}

func testListPagination(t *testing.T, s vfs.Store) {
	rec := tree(t, s)
	var want []string
	for _, k := range rec {
		if k == "d/s1/x" {
			continue // below a sub-directory: rolled up into d/s1/
		}
		want = append(want, k)
	}
	for _, limit := range []int{0, 1, 4, len(want), 100} {
		es := ListAll(t, s, vfs.ListOptions{Prefix: "d/", Limit: limit})
		if got := keys(es); !slices.Equal(got, want) {
			t.Fatalf("list d/ limit %d:\n got %v\nwant %v", limit, got, want)
		}
		for _, e := range es {
			if !e.IsDir && strings.HasPrefix(e.Key, "d/f0") && e.Size != int64(e.Key[4]-'0') {
				t.Fatalf("entry %+v: wrong size", e)
			}
			if !e.IsDir && e.ModTime.IsZero() {
				t.Fatalf("entry %+v: no mod time", e)
			}
		}
	}
	if got := keys(ListAll(t, s, vfs.ListOptions{Limit: 1})); !slices.Equal(got, []string{"d/(dir)"}) {
		t.Fatalf("list root: %v; want [d/(dir)]", got)
	}
	if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "d/s2/"})); !slices.Equal(got, []string{"d/s2/(dir)"}) {
		t.Fatalf("list d/s2/: %v; want only its marker", got)
	}
	// Several directories at the top, paged one by one.
	MustPut(t, s, "e/", nil)
	MustPut(t, s, "e/x", nil)
	MustPut(t, s, "f", nil)
	for _, limit := range []int{1, 2} {
		got := keys(ListAll(t, s, vfs.ListOptions{Limit: limit}))
		if want := []string{"d/(dir)", "e/(dir)", "f"}; !slices.Equal(got, want) {
			t.Fatalf("list root limit %d: %v; want %v", limit, got, want)
		}
	}
}

func testListRecursive(t *testing.T, s vfs.Store) {
	want := tree(t, s)
	MustPut(t, s, "e", nil) // outside the prefix
	for _, limit := range []int{0, 1, 5, 100} {
		es := ListAll(t, s, vfs.ListOptions{Prefix: "d/", Recursive: true, Limit: limit})
		if got := keys(es); !slices.Equal(got, want) {
			t.Fatalf("recursive list d/ limit %d:\n got %v\nwant %v", limit, got, want)
		}
	}
	all := keys(ListAll(t, s, vfs.ListOptions{Recursive: true, Limit: 3}))
	if !slices.Equal(all, append(slices.Clone(want), "e")) {
		t.Fatalf("recursive list of everything: %v", all)
	}
	got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "d/s1/", Recursive: true}))
	if !slices.Equal(got, []string{"d/s1/(dir)", "d/s1/x"}) {
		t.Fatalf("recursive list d/s1/: %v", got)
	}
}

func testListPartialPrefix(t *testing.T, s vfs.Store) {
	tree(t, s)
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("d/f%02d", i))
	}
	for _, limit := range []int{0, 3} {
		if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "d/f0", Limit: limit})); !slices.Equal(got, want) {
			t.Fatalf("list d/f0 limit %d: %v", limit, got)
		}
	}
	if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "d/s"})); !slices.Equal(got, []string{"d/s1-", "d/s1/(dir)", "d/s2/(dir)"}) {
		t.Fatalf("list d/s: %v", got)
	}
	if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "d/s", Recursive: true})); !slices.Equal(got, []string{"d/s1-", "d/s1/(dir)", "d/s1/x", "d/s2/(dir)"}) {
		t.Fatalf("recursive list d/s: %v", got)
	}
	if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "d"})); !slices.Equal(got, []string{"d/(dir)"}) {
		t.Fatalf("list d: %v", got)
	}
	for _, p := range []string{"zz", "d/f00/", "d/f00/x", "d/s1/x/"} {
		for _, rec := range []bool{false, true} {
			if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: p, Recursive: rec})); len(got) != 0 {
				t.Fatalf("list %q (recursive %v): %v; want nothing", p, rec, got)
			}
		}
	}
}

func testDelete(t *testing.T, s vfs.Store) {
	MustPut(t, s, "del/", nil)
	MustPut(t, s, "del/f", []byte("f"))
	MustPut(t, s, "del/g", Data(PartSize+1))
	for _, k := range []string{"del/f", "del/g"} {
		if err := s.Delete(t.Context(), k); err != nil {
			t.Fatalf("delete %s: %v", k, err)
		}
		mustNotExist(t, s, k)
		if _, err := s.Read(t.Context(), k, 0, -1); !errors.Is(err, vfs.ErrNotExist) {
			t.Fatalf("read deleted %s: %v", k, err)
		}
	}
	if err := s.Delete(t.Context(), "del/f"); err != nil {
		t.Fatalf("delete again: %v; want nil", err)
	}
	if err := s.Delete(t.Context(), "never/was"); err != nil {
		t.Fatalf("delete missing: %v; want nil", err)
	}
	if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "del/"})); !slices.Equal(got, []string{"del/(dir)"}) {
		t.Fatalf("list after deleting the files: %v", got)
	}
	if err := s.Delete(t.Context(), "del/"); err != nil {
		t.Fatalf("delete empty marker: %v", err)
	}
	mustNotExist(t, s, "del/")
	if got := keys(ListAll(t, s, vfs.ListOptions{Recursive: true})); len(got) != 0 {
		t.Fatalf("store not empty after deleting everything: %v", got)
	}
}

func testCopy(t *testing.T, s vfs.Store) {
	data := Data(1000)
	MustPut(t, s, "src", data)
	if err := s.Copy(t.Context(), "src", "dir/dst"); err != nil {
		t.Fatalf("copy: %v", err)
	}
	checkContent(t, s, "dir/dst", data)
	checkContent(t, s, "src", data)

	big := Data(PartSize + 1)
	MustPut(t, s, "big", big)
	if err := s.Copy(t.Context(), "big", "dir/dst"); err != nil {
		t.Fatalf("copy over an existing key: %v", err)
	}
	checkContent(t, s, "dir/dst", big)

	MustPut(t, s, "empty", nil)
	if err := s.Copy(t.Context(), "empty", "empty2"); err != nil {
		t.Fatalf("copy empty: %v", err)
	}
	checkContent(t, s, "empty2", nil)

	if err := s.Copy(t.Context(), "missing", "x"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("copy missing: %v; want ErrNotExist", err)
	}
	mustNotExist(t, s, "x")

	MustPut(t, s, "m/", nil)
	if err := s.Copy(t.Context(), "m/", "n/"); err != nil {
		t.Fatalf("copy marker: %v", err)
	}
	if oi, err := s.Stat(t.Context(), "n/"); err != nil || !oi.IsDir {
		t.Fatalf("copied marker: %+v, %v", oi, err)
	}
}

func testMarkers(t *testing.T, s vfs.Store) {
	MustPut(t, s, "m/", nil)
	oi, err := s.Stat(t.Context(), "m/")
	if err != nil || !oi.IsDir || oi.Size != 0 || oi.Key != "m/" {
		t.Fatalf("stat marker: %+v, %v", oi, err)
	}
	mustNotExist(t, s, "m")
	if b, err := Get(t, s, "m/"); err != nil || len(b) != 0 {
		t.Fatalf("read marker: %q, %v", b, err)
	}
	if got := keys(ListAll(t, s, vfs.ListOptions{})); !slices.Equal(got, []string{"m/(dir)"}) {
		t.Fatalf("list root: %v", got)
	}
	if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "m/"})); !slices.Equal(got, []string{"m/(dir)"}) {
		t.Fatalf("list m/: %v", got)
	}
	// Re-creating an existing marker is fine (mkdir -p style callers).
	MustPut(t, s, "m/", nil)
	if err := Put(t, s, "m2/", []byte("data"), vfs.CreateOptions{SizeHint: -1}); err == nil {
		t.Fatal("marker with data accepted")
	}
	mustNotExist(t, s, "m2/")
	// Nested markers.
	MustPut(t, s, "m/a/", nil)
	MustPut(t, s, "m/a/b/", nil)
	if got := keys(ListAll(t, s, vfs.ListOptions{Prefix: "m/a/"})); !slices.Equal(got, []string{"m/a/(dir)", "m/a/b/(dir)"}) {
		t.Fatalf("list m/a/: %v", got)
	}
}

func testSpecialKeys(t *testing.T, s vfs.Store) {
	names := []string{
		"sp ace/a b.txt",
		"sp ace/plus+percent%25hash#q?amp&eq=.txt",
		"sp ace/ünïcødé 日本.txt",
		"sp ace/semi;colon,comma'quote\"(paren)",
		"sp ace/a..b",
	}
	MustPut(t, s, "sp ace/", nil)
	for i, k := range names {
		data := []byte(k)
		MustPut(t, s, k, data)
		checkContent(t, s, k, data)
		dst := fmt.Sprintf("%s copy %d", k, i)
		if err := s.Copy(t.Context(), k, dst); err != nil {
			t.Fatalf("copy %q: %v", k, err)
		}
		checkContent(t, s, dst, data)
	}
	es := ListAll(t, s, vfs.ListOptions{Prefix: "sp ace/", Limit: 2})
	if len(es) != 1+2*len(names) {
		t.Fatalf("list: %v", keys(es))
	}
	if !slices.IsSortedFunc(es, func(a, b vfs.ObjectInfo) int { return strings.Compare(a.Key, b.Key) }) {
		t.Fatalf("list not sorted: %v", keys(es))
	}
}

// putMTime uploads data and sets t during the upload, after all the data
// (as OpenSSH's put -p does); when the upload can no longer take it, after
// the commit, as vfs does.
func putMTime(t *testing.T, s vfs.Store, key string, data []byte, mt time.Time) {
	t.Helper()
	up, err := s.Create(t.Context(), key, vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := write(up, data); err != nil {
		t.Fatal(err)
	}
	folded := up.SetMTime(mt)
	if err := up.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !folded {
		if err := s.SetMTime(t.Context(), key, mt); err != nil {
			t.Fatal(err)
		}
	}
}

func wantMTime(t *testing.T, s vfs.Store, key string, want time.Time) {
	t.Helper()
	oi, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("stat %q: %v", key, err)
	}
	if !oi.MTime.Equal(want) {
		t.Errorf("%q: MTime %v; want %v", key, oi.MTime, want)
	}
	if oi.ModTime.IsZero() {
		t.Errorf("%q: no ModTime", key)
	}
}

// Modification times: set during an upload, at create, on a stored object
// (content unchanged), kept by Copy, reported by Stat and by List when
// asked; an object without one has a zero MTime.
func testMTime(t *testing.T, s vfs.Store) {
	t1 := time.Unix(1577934240, 123456789) // 2020-01-02 03:04:00.123456789 UTC
	t2 := time.Unix(946684800, 0)          // 2000-01-01
	small, big := Data(1000), Data(PartSize+1)
	putMTime(t, s, "d/small", small, t1)
	putMTime(t, s, "d/big", big, t1)
	MustPut(t, s, "d/plain", []byte("x"))
	if err := Put(t, s, "d/sub/", nil, vfs.CreateOptions{MTime: t2}); err != nil {
		t.Fatal(err)
	}
	wantMTime(t, s, "d/small", t1)
	wantMTime(t, s, "d/big", t1)
	wantMTime(t, s, "d/plain", time.Time{})
	wantMTime(t, s, "d/sub/", t2)

	for _, k := range []string{"d/small", "d/big"} {
		if err := s.SetMTime(t.Context(), k, t2); err != nil {
			t.Fatalf("set mtime of %q: %v", k, err)
		}
		wantMTime(t, s, k, t2)
	}
	checkContent(t, s, "d/small", small)
	checkContent(t, s, "d/big", big)
	if err := s.SetMTime(t.Context(), "d/missing", t2); !errors.Is(err, vfs.ErrNotExist) {
		t.Errorf("set mtime of a missing key: %v; want ErrNotExist", err)
	}

	if err := s.Copy(t.Context(), "d/big", "d/copy"); err != nil {
		t.Fatal(err)
	}
	wantMTime(t, s, "d/copy", t2)
	checkContent(t, s, "d/copy", big)

	got := map[string]time.Time{}
	for _, e := range ListAll(t, s, vfs.ListOptions{Prefix: "d/", MTimes: true}) {
		got[e.Key] = e.MTime
	}
	for k, want := range map[string]time.Time{"d/small": t2, "d/big": t2, "d/copy": t2, "d/plain": {}, "d/sub/": t2} {
		if mt, ok := got[k]; !ok || !mt.Equal(want) {
			t.Errorf("listed %q: MTime %v (listed %v); want %v", k, mt, ok, want)
		}
	}
}
