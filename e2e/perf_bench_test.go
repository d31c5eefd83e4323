package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
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
	// SFTPGW_BENCH_PART (MiB) and SFTPGW_BENCH_CONC tune the store.
	cfg := testenv.S3(b)
	if v, err := strconv.Atoi(os.Getenv("SFTPGW_BENCH_PART")); err == nil {
		cfg.PartSize = int64(v) << 20
	}
	if v, err := strconv.Atoi(os.Getenv("SFTPGW_BENCH_CONC")); err == nil {
		cfg.Concurrency = v
	}
	st, err := s3store.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	g := testgw.Start(b, testgw.Options{Stores: map[string]vfs.Store{"files": st, "logs": st}})
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
		for i := 0; i < len(buf); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			binary.LittleEndian.PutUint64(buf[i:], x)
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
	run := func(name, batch string) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			// This process is the gateway (plus a little test harness):
			// its RSS growth is what one transfer costs.
			runtime.GC()
			debug.FreeOSMemory()
			before := rssMiB()
			peak := before
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if r := rssMiB(); r > peak {
						peak = r
						if hp := os.Getenv("SFTPGW_BENCH_HEAPPROF"); hp != "" {
							// In-use heap as of the last GC, near the RSS peak.
							if f, err := os.Create(hp); err == nil {
								_ = pprof.WriteHeapProfile(f)
								f.Close()
							}
						}
					}
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}()
			cpu0 := cpuSeconds()
			for b.Loop() {
				if out, err := g.SFTP(u, batch, extra...); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			}
			b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "gw-cpu-s/op")
			close(stop)
			<-done
			b.ReportMetric(peak-before, "RSS-growth-MiB")
		})
	}
	run("put", fmt.Sprintf("put %s big\n", src))
	run("get", fmt.Sprintf("get big %s\n", filepath.Join(dir, "dl")))

	// Many small files in one session: per-file round trips dominate.
	small := filepath.Join(dir, "small")
	if err := os.Mkdir(small, 0o700); err != nil {
		b.Fatal(err)
	}
	const nSmall = 200
	for i := range nSmall {
		if err := os.WriteFile(filepath.Join(small, fmt.Sprintf("f%03d", i)), buf[:64<<10], 0o600); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("small", func(b *testing.B) {
		cpu0 := cpuSeconds()
		start := time.Now()
		for i := 0; b.Loop(); i++ {
			if out, err := g.SFTP(u, fmt.Sprintf("mkdir s%d\nput %s/* s%d/\n", i, small, i), extra...); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
		b.ReportMetric(float64(nSmall*b.N)/time.Since(start).Seconds(), "files/s")
		b.ReportMetric((cpuSeconds()-cpu0)/float64(nSmall*b.N)*1e3, "gw-cpu-ms/file")
	})
}

// cpuSeconds is the CPU time this process (the gateway) used so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// rssMiB is this process's resident set size.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, _ := strconv.ParseFloat(f[1], 64)
			return kib / 1024
		}
	}
	return 0
}
