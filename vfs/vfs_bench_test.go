package vfs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
)

// memStore is just enough of a Store for the hot-path benchmarks: uploads
// are counted and dropped, reads come from one in-memory object.
type memStore struct {
	obj []byte
}

func (s *memStore) Stat(_ context.Context, key string) (vfs.ObjectInfo, error) {
	if key == "obj" && s.obj != nil {
		return vfs.ObjectInfo{Key: key, Size: int64(len(s.obj))}, nil
	}
	return vfs.ObjectInfo{}, vfs.ErrNotExist
}
func (s *memStore) List(context.Context, vfs.ListOptions) (vfs.Page, error) { return vfs.Page{}, nil }
func (s *memStore) Create(context.Context, string, vfs.CreateOptions) (vfs.Upload, error) {
	return &countUpload{}, nil
}
func (s *memStore) Read(_ context.Context, _ string, off, n int64) (io.ReadCloser, error) {
	end := int64(len(s.obj))
	if n >= 0 {
		end = min(end, off+n)
	}
	return io.NopCloser(bytes.NewReader(s.obj[min(off, end):end])), nil
}
func (s *memStore) Delete(context.Context, string) error       { return nil }
func (s *memStore) Copy(context.Context, string, string) error { return nil }
func (s *memStore) SetMTime(context.Context, string, time.Time) error {
	return nil
}

type countUpload struct{ n int64 }

func (u *countUpload) Write(p []byte) (int, error)  { u.n += int64(len(p)); return len(p), nil }
func (u *countUpload) Commit(context.Context) error { return nil }
func (u *countUpload) Abort(context.Context) error  { return nil }
func (u *countUpload) SetMTime(time.Time) bool      { return true }
func benchFS(st vfs.Store) *vfs.FS {
	return vfs.New(vfs.Options{Store: st, Session: vfs.Session{User: "u", Role: "r", Perms: vfs.PermAll}})
}

// BenchmarkWriter measures the reorder buffer in front of an upload:
// chunks in order, and shuffled within groups of 32 (a stock OpenSSH client
// keeps up to 64 requests in flight and pkg/sftp's workers reorder them).
func BenchmarkWriter(b *testing.B) {
	for _, size := range []int{32 << 10, 256 << 10} {
		for _, shuffled := range []bool{false, true} {
			name := fmt.Sprintf("%dKiB/in-order", size>>10)
			if shuffled {
				name = fmt.Sprintf("%dKiB/shuffled", size>>10)
			}
			b.Run(name, func(b *testing.B) {
				const group = 32
				fs := benchFS(&memStore{})
				w, err := fs.OpenWrite(context.Background(), "/f", false)
				if err != nil {
					b.Fatal(err)
				}
				chunk := make([]byte, size)
				perm := make([]int, group)
				for i := range perm {
					perm[i] = i
				}
				rng := rand.New(rand.NewPCG(1, 2))
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				// Whole groups only, so the reorder buffer drains every group.
				n := (b.N + group - 1) / group * group
				for g := 0; g < n; g += group {
					if shuffled {
						rng.Shuffle(group, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
					}
					for _, i := range perm {
						if _, err := w.WriteAt(chunk, int64(g+i)*int64(size)); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				if got, want := w.Size(), int64(n)*int64(size); got != want {
					b.Fatalf("accepted %d bytes in order, want %d", got, want)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkReader measures serving pkg/sftp's ReadAt calls of 255 KiB, in
// order, from a store that answers from memory.
func BenchmarkReader(b *testing.B) {
	const size = 64 << 20
	const chunk = 255 << 10
	obj := make([]byte, size)
	fs := benchFS(&memStore{obj: obj})
	buf := make([]byte, chunk)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		r, err := fs.OpenRead(context.Background(), "/obj")
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += chunk {
			if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
		if !r.Complete() {
			b.Fatal("download not complete")
		}
		r.Close()
	}
}

func BenchmarkCleanPath(b *testing.B) {
	for _, p := range []string{
		"/",
		"report.pdf",
		"/incoming/2024/11/23/scan-0001.pdf",
		"/a/./b/../c//d/ünïcode/文件.pdf",
	} {
		b.Run(fmt.Sprintf("len%d", len(p)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := vfs.CleanPath(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
