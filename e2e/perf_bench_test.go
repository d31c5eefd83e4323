package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sftpgw/sftpgw/internal/testgw"
)

// BenchmarkSFTP runs the stock OpenSSH client against an in-process gateway
// over MinIO, so `go test -bench SFTP -cpuprofile` profiles the gateway's
// whole data path (SSH, SFTP, reorder buffer, S3 upload and download).
// bench/run.sh is the end-to-end comparison; this is the profiling harness.
//
//	SFTPGW_BENCH_MIB=256 go test ./e2e -run '^$' -bench SFTP -benchtime 3x -cpuprofile cpu.out
//
// SFTPGW_BENCH_CIPHER forces a cipher (default: the client's own choice).
func BenchmarkSFTP(b *testing.B) {
	if _, err := exec.LookPath("sftp"); err != nil {
		b.Skip("sftp not installed")
	}
	size := int64(256)
	if v, err := strconv.Atoi(os.Getenv("SFTPGW_BENCH_MIB")); err == nil && v > 0 {
		size = int64(v)
	}
	size <<= 20
	g := testgw.Start(b, testgw.Options{})
	u := g.AddUser("partner", false)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	// Incompressible, cheap data (nothing compresses here anyway).
	buf := make([]byte, 1<<20)
	x := uint64(88172645463325252)
	for range size >> 20 {
		for i := range buf {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			buf[i] = byte(x)
		}
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	var extra []string
	if c := os.Getenv("SFTPGW_BENCH_CIPHER"); c != "" {
		extra = append(extra, "-c", c)
	}
	b.Run("put", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			if out, err := g.SFTP(u, fmt.Sprintf("put %s big\n", src), extra...); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if out, err := g.SFTP(u, fmt.Sprintf("get big %s\n", filepath.Join(dir, "dl")), extra...); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}
