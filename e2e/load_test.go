package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// Load test knobs. The defaults are the scenario: 100 sessions,
// each 20 small files and 2 × 50 MiB (multipart), about 10 GiB in a bit
// over a minute on two cores with ~4 GiB peak RSS (gateway and the 100
// in-process clients together). For a quicker run, e.g.
//
//	SFTPGW_LOAD_BIG_MIB=16 go test ./e2e -run TestLoad -v
//
// Figures are in e2e/COMPATIBILITY.md.
const (
	envLoadSessions = "SFTPGW_LOAD_SESSIONS"    // concurrent sessions (default 100)
	envLoadBigMiB   = "SFTPGW_LOAD_BIG_MIB"     // size of each of the 2 big files (default 50)
	envLoadSmall    = "SFTPGW_LOAD_SMALL_FILES" // small files per session (default 20)
)

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// TestLoad runs many concurrent sessions with the Go SSH and SFTP
// clients (one process, real gateway, real MinIO), each uploading small
// files and two big (multipart) files. Every object must arrive with the
// right SHA-256 and SSE, no operation may fail, and memory must stay
// bounded; duration, throughput, peak RSS and heap are logged.
func TestLoad(t *testing.T) {
	sessions := envInt(t, envLoadSessions, 100)
	bigMiB := envInt(t, envLoadBigMiB, 50)
	smallN := envInt(t, envLoadSmall, 20)
	g := testgw.Start(t, testgw.Options{})
	c, bucket := s3Client(t, g, "files")
	users := make([]*testgw.User, 10)
	for i := range users {
		users[i] = g.AddUser("partner", false)
	}

	mon := startMemMonitor()
	var (
		mu       sync.Mutex
		want     = map[string]string{} // key → SHA-256
		failures []string
		bytesUp  atomic.Int64
		wg       sync.WaitGroup
		// Logins are spread out as clients would be; the gateway refuses
		// more than 10 handshakes at once from one address by design
		// (MaxUnauthPerSource), and drops some early above 10 in all.
		handshakes = make(chan struct{}, 6)
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	start := time.Now()
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := users[i%len(users)]
			handshakes <- struct{}{}
			sc, err := cliDial(t, g, u, "")
			<-handshakes
			if err != nil {
				fail("session %d: login: %v", i, err)
				return
			}
			defer sc.Close()
			cl, err := sftp.NewClient(sc, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64),
				sftp.MaxPacketUnchecked(255<<10))
			if err != nil {
				fail("session %d: sftp: %v", i, err)
				return
			}
			defer cl.Close()
			dir := fmt.Sprintf("s%03d", i)
			if err := cl.Mkdir(dir); err != nil {
				fail("session %d: mkdir: %v", i, err)
				return
			}
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			put := func(name string, size int64) {
				sum, err := loadUpload(cl, dir+"/"+name, uint64(i)<<32|uint64(len(name))<<16|uint64(size%65521), size)
				if err != nil {
					fail("session %d: %s: %v", i, name, err)
					return
				}
				bytesUp.Add(size)
				mu.Lock()
				want[cliHome(u)+dir+"/"+name] = sum
				mu.Unlock()
			}
			for j := range smallN {
				put(fmt.Sprintf("small-%02d.dat", j), 1+rng.Int64N(64<<10))
			}
			for j := range 2 {
				put(fmt.Sprintf("big-%d.bin", j), int64(bigMiB)<<20+int64(j))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	peak := mon.stop()
	for _, f := range failures {
		t.Error(f)
	}
	total := bytesUp.Load()
	t.Logf("load: %d sessions × (%d small + 2 × %d MiB) = %d files, %.1f MiB in %s (%.1f MiB/s)",
		sessions, smallN, bigMiB, len(want), float64(total)/(1<<20), elapsed.Round(10*time.Millisecond),
		float64(total)/(1<<20)/elapsed.Seconds())
	t.Logf("load: peak RSS %.0f MiB (VmHWM %.0f MiB), peak HeapInuse %.0f MiB, peak goroutines %d",
		float64(peak.rss)/(1<<20), float64(peak.hwm)/(1<<20), float64(peak.heap)/(1<<20), peak.goroutines)

	// Bounded memory. Per session in flight: the client's 64 pipelined
	// writes (16 MiB), as many request pages in the gateway, its reorder
	// window (<= 16 MiB) and the S3 parts being sent (5 × 8 MiB): at most
	// ~88 MiB, less for files smaller than that. Buffering whole files
	// would blow this; TestLoadMemoryFlat shows it does not grow with size.
	perSession := min(uint64(88)<<20, 4*uint64(bigMiB)<<20+(1<<20))
	if limit := 512<<20 + uint64(sessions)*perSession; peak.rss > limit {
		t.Errorf("peak RSS %d MiB exceeds %d MiB", peak.rss>>20, limit>>20)
	}
	t.Logf("load: %.1f MiB peak RSS per session", float64(peak.rss)/float64(sessions)/(1<<20))
	if n := len(g.Events.Find(audit.Event{Op: "upload", Result: "error"})); n != 0 {
		t.Errorf("%d upload errors in the audit log", n)
	}
	if n := len(g.Events.Find(audit.Event{Kind: "file", Op: "upload", Result: "ok"})); n != sessions*(smallN+2) {
		t.Errorf("%d upload events, want %d", n, sessions*(smallN+2))
	}

	// Every object, straight from S3: content and encryption.
	vstart := time.Now()
	verifyObjects(t, c, bucket, want)
	t.Logf("load: verified %d objects in %s", len(want), time.Since(vstart).Round(10*time.Millisecond))
	if keys := allKeys(t, c, bucket); len(keys) != len(want)+sessions {
		t.Errorf("%d keys in the bucket, want %d files + %d directory markers", len(keys), len(want), sessions)
	}
	checkNoPending(t, c, bucket)

	// Sessions are gone: so must be every goroutine that served them (idle
	// HTTP keep-alive connections to S3 may stay; they are pooled).
	left := sessionGoroutines()
	for deadline := time.Now().Add(20 * time.Second); len(left) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		left = sessionGoroutines()
	}
	if len(left) > 0 {
		t.Errorf("%d session goroutines left after 20 s, e.g.:\n%s", len(left), strings.Join(left[:min(3, len(left))], "\n\n"))
	}
}

// sessionGoroutines returns the stacks of goroutines in SSH, SFTP or VFS
// code, other than the gateway's accept loop and revalidation ticker.
func sessionGoroutines() []string {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*Server).Serve(") && !strings.Contains(g, "pkg/sftp") {
			continue
		}
		// The server's session revalidation ticker lives until Shutdown.
		if strings.Contains(g, "(*Server).revalidateLoop(") {
			continue
		}
		// A multipart abort that failed during an earlier test's store
		// outage is retried in the background for a bounded time (up to
		// 2 minutes); it belongs to no session.
		if strings.Contains(g, "s3store.(*upload).abortID") {
			continue
		}
		if strings.Contains(g, "github.com/pkg/sftp") || strings.Contains(g, "golang.org/x/crypto/ssh") ||
			strings.Contains(g, "sftpgw/sftpgw/vfs") || strings.Contains(g, "sftpgw/sftpgw/gateway") {
			out = append(out, g)
		}
	}
	return out
}

// TestLoadMemoryFlat uploads a few files far larger than every buffer the
// gateway has (reorder window, parts in flight): memory must not grow
// with the file size, the upload streams.
func TestLoadMemoryFlat(t *testing.T) {
	const sessions, size = 4, 320 << 20
	g := testgw.Start(t, testgw.Options{})
	c, bucket := s3Client(t, g, "files")
	u := g.AddUser("partner", false)
	base := settledRSS()
	mon := startMemMonitor()
	start := time.Now()
	sums := make([]string, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, _ := cliSFTP(t, g, u, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64),
				sftp.MaxPacketUnchecked(255<<10))
			sum, err := loadUpload(cl, fmt.Sprintf("huge-%d.bin", i), uint64(1000+i), size)
			if err != nil {
				t.Errorf("upload %d: %v", i, err)
			}
			sums[i] = sum
		}()
	}
	wg.Wait()
	peak := mon.stop()
	grew := int64(peak.rss) - int64(base)
	t.Logf("memory flat: %d × %d MiB in %s; RSS %d MiB before, peak %d MiB (+%d MiB, %d MiB per upload), peak HeapInuse %d MiB",
		sessions, size>>20, time.Since(start).Round(10*time.Millisecond), base>>20, peak.rss>>20, grew>>20,
		grew/sessions>>20, peak.heap>>20)
	// Per upload at most ~88 MiB is in flight (see TestLoad); buffering the
	// files would need 320 MiB each.
	if limit := int64(sessions) * 128 << 20; grew > limit {
		t.Errorf("RSS grew by %d MiB for %d uploads of %d MiB: not streaming (limit %d MiB)", grew>>20, sessions, size>>20, limit>>20)
	}
	want := map[string]string{}
	for i, s := range sums {
		want[cliHome(u)+fmt.Sprintf("huge-%d.bin", i)] = s
	}
	verifyObjects(t, c, bucket, want)
	checkNoPending(t, c, bucket)
}

// settledRSS returns the process RSS once memory left over from earlier
// tests has been handed back (the Go heap at once, idle S3 part buffers
// after a couple of seconds), so growth can be measured from it.
func settledRSS() uint64 {
	debug.FreeOSMemory()
	rss, _ := procMem()
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		debug.FreeOSMemory()
		now, _ := procMem()
		if now >= rss && now-rss < 1<<20 && now > 0 {
			return now
		}
		rss = min(rss, now)
	}
	return rss
}

// loadUpload writes size pseudo-random bytes (from seed) to p and returns
// their SHA-256. The reader has a Size, so pkg/sftp pipelines the writes.
func loadUpload(c *sftp.Client, p string, seed uint64, size int64) (string, error) {
	f, err := c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	var seedb [32]byte
	for i := range 4 {
		seedb[i*8] = byte(seed >> (8 * i))
	}
	src := &sizedReader{r: io.TeeReader(io.LimitReader(rand.NewChaCha8(seedb), size), h), n: size}
	if _, err := f.ReadFrom(src); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close (commit): %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type sizedReader struct {
	r io.Reader
	n int64
}

func (s *sizedReader) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *sizedReader) Size() int64                { return s.n }

// verifyObjects reads every object back (8 at a time) and checks its
// SHA-256 and SSE.
func verifyObjects(t *testing.T, c *s3.Client, bucket string, want map[string]string) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var mu sync.Mutex
	bad := 0
	for key, sum := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
			if err != nil {
				t.Errorf("get %s: %v", key, err)
				return
			}
			defer out.Body.Close()
			h := sha256.New()
			if _, err := io.Copy(h, out.Body); err != nil {
				t.Errorf("read %s: %v", key, err)
				return
			}
			got := hex.EncodeToString(h.Sum(nil))
			if got != sum || string(out.ServerSideEncryption) != "AES256" {
				mu.Lock()
				bad++
				if bad <= 10 {
					t.Errorf("%s: sha %s (want %s), SSE %q", key, got, sum, out.ServerSideEncryption)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if bad > 0 {
		t.Errorf("%d of %d objects wrong", bad, len(want))
	}
}

func checkNoPending(t *testing.T, c *s3.Client, bucket string) {
	t.Helper()
	waitFor(t, 30*time.Second, "no pending multipart uploads", func() bool {
		return len(pendingKeys(t, c, bucket)) == 0
	})
}

func pendingKeys(t *testing.T, c *s3.Client, bucket string) []string {
	var keys []string
	p := s3.NewListMultipartUploadsPaginator(c, &s3.ListMultipartUploadsInput{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Uploads {
			keys = append(keys, *u.Key)
		}
	}
	return keys
}

// memPeak is the highest memory use seen while a test ran.
type memPeak struct {
	rss, hwm, heap uint64
	goroutines     int
}

type memMonitor struct {
	stopc chan struct{}
	done  chan memPeak
}

// startMemMonitor samples this process (gateway, clients and all) every
// 100 ms: resident set size from /proc and the Go heap in use.
func startMemMonitor() *memMonitor {
	m := &memMonitor{stopc: make(chan struct{}), done: make(chan memPeak, 1)}
	go func() {
		var p memPeak
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			p.heap = max(p.heap, ms.HeapInuse)
			p.goroutines = max(p.goroutines, runtime.NumGoroutine())
			rss, hwm := procMem()
			p.rss, p.hwm = max(p.rss, rss), max(p.hwm, hwm)
			select {
			case <-m.stopc:
				m.done <- p
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *memMonitor) stop() memPeak {
	close(m.stopc)
	return <-m.done
}

// procMem reads VmRSS and VmHWM (bytes) from /proc/self/status.
func procMem() (rss, hwm uint64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm
}
