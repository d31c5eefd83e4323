package vfs_test

import (
	"context"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
)

// BenchmarkWriterLimits is the in-order 256 KiB Writer path with and
// without upload limits (size, quota and type checks on every write).
func BenchmarkWriterLimits(b *testing.B) {
	for _, c := range []struct {
		name string
		lim  vfs.Limits
	}{
		{"none", vfs.Limits{}},
		{"all", vfs.Limits{MaxFileSize: 1 << 62, QuotaBytes: 1 << 62, QuotaFiles: 1000, AllowedTypes: []string{"pdf"}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			fs := vfs.New(vfs.Options{Store: &memStore{}, Session: vfs.Session{User: "u", Role: "r", Perms: vfs.PermAll, Limits: c.lim}})
			w, err := fs.OpenWrite(context.Background(), "/f.pdf", false)
			if err != nil {
				b.Fatal(err)
			}
			chunk := make([]byte, 256<<10)
			copy(chunk, "%PDF-1.7\n")
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := w.WriteAt(chunk, int64(i)*int64(len(chunk))); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
