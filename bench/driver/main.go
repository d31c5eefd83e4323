// Command driver runs the measurements of make bench against servers that
// bench/run.sh has started (gateway, OpenSSH sshd, MinIO, optionally SFTPGo
// or rclone), prints the table and writes the JSON result. It drives the
// stock OpenSSH sftp client for transfers, bench/raws3 for the direct S3
// baseline and bench/sshload for login latency and idle sessions.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// target is one SFTP server under test.
type target struct {
	Name string // "gateway", "openssh", "sftpgo", "rclone"
	Host string
	Port string
	User string
	PID  int    // for RSS and CPU; 0: not sampled
	Dir  string // local directory behind it (openssh), for creating fixtures
}

type driver struct {
	idleKiB                int64 // gateway RSS at rest, before any transfer
	work, bin, key, bucket string
	client                 string // client-side files (tmpfs if possible)
	big                    string // the 1 GiB source file
	bigSHA                 string
	reps, smallN, listN    int
	bigSize                int64
	gw, ossh               target
	extra                  []target
	totpFile, gwHostKey    string
	minioPID               int
	s3c                    *s3.Client
	res                    *results
	log                    io.Writer
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench driver:", err)
		os.Exit(1)
	}
}

func run() error {
	d := &driver{log: os.Stderr, res: newResults()}
	var gwAddr, gwUser, sshAddr, sshUser, sshDir, out, extra, sizeStr string
	var gwPID int
	var variants bool
	flag.StringVar(&d.work, "work", "", "scratch directory")
	flag.StringVar(&d.client, "client-dir", "", "directory for the client's files (default: -work)")
	flag.StringVar(&d.bin, "bin", "", "directory with raws3 and sshload")
	flag.StringVar(&d.key, "key", "", "client private key")
	flag.StringVar(&d.bucket, "bucket", "", "bucket behind the gateway")
	flag.StringVar(&gwAddr, "gw", "", "gateway host:port")
	flag.StringVar(&gwUser, "gw-user", "bench", "gateway key-only user (home bench/)")
	flag.IntVar(&gwPID, "gw-pid", 0, "gateway process id")
	flag.StringVar(&d.gwHostKey, "gw-hostkey", "", "gateway host public key")
	flag.StringVar(&d.totpFile, "totp", "", "MFA users file for the key+TOTP login test")
	flag.StringVar(&sshAddr, "sshd", "", "OpenSSH sshd host:port")
	flag.StringVar(&sshUser, "sshd-user", "root", "OpenSSH user")
	flag.StringVar(&sshDir, "sshd-dir", "", "OpenSSH sftp start directory")
	flag.IntVar(&d.minioPID, "minio-pid", 0, "MinIO process id (CPU accounting)")
	flag.StringVar(&extra, "extra", "", "more servers: name=host:port,user,pid;...")
	flag.IntVar(&d.reps, "reps", 3, "repetitions of the 1 GiB transfers")
	flag.StringVar(&sizeStr, "size", "1GiB", "size of the big file")
	flag.IntVar(&d.smallN, "small", 1000, "number of 64 KiB files")
	flag.IntVar(&d.listN, "list", 10000, "objects in the listed directory")
	flag.BoolVar(&variants, "variants", true, "also measure request-size and cipher variants")
	quick := flag.Bool("quick", false, "only the big transfers (for iterating on the data path)")
	flag.StringVar(&out, "out", "", "JSON result file")
	flag.Parse()
	if d.client == "" {
		d.client = d.work
	}
	var err error
	if d.bigSize, err = parseSize(sizeStr); err != nil {
		return err
	}
	if d.gw, err = mkTarget("gateway", gwAddr, gwUser, gwPID); err != nil {
		return err
	}
	if d.ossh, err = mkTarget("openssh", sshAddr, sshUser, 0); err != nil {
		return err
	}
	d.ossh.Dir = sshDir
	for _, e := range strings.Split(extra, ";") {
		if e == "" {
			continue
		}
		name, spec, _ := strings.Cut(e, "=")
		f := strings.Split(spec, ",")
		if len(f) != 3 {
			return fmt.Errorf("bad -extra %q", e)
		}
		pid, _ := strconv.Atoi(f[2])
		t, err := mkTarget(name, f[0], f[1], pid)
		if err != nil {
			return err
		}
		d.extra = append(d.extra, t)
	}
	d.s3c, err = s3store.NewClient(context.Background(), s3store.Config{
		Region: "us-east-1", Endpoint: os.Getenv("SFTPGW_TEST_S3_ENDPOINT"), PathStyle: true,
		AccessKeyID: os.Getenv("SFTPGW_TEST_S3_ACCESS_KEY"), SecretAccessKey: os.Getenv("SFTPGW_TEST_S3_SECRET_KEY"),
	})
	if err != nil {
		return err
	}
	d.res.Meta = meta(d)

	steps := []struct {
		name string
		fn   func() error
	}{
		{"memory (idle)", d.idleMemory},
		{"negotiated algorithms", d.negotiated},
		{"login latency", d.logins},
		{"fixtures", d.fixtures},
		{"1 GiB transfers", d.bigTransfers},
	}
	if variants {
		steps = append(steps, struct {
			name string
			fn   func() error
		}{"variants", d.variants})
	}
	steps = append(steps, []struct {
		name string
		fn   func() error
	}{
		{"200 idle sessions", d.idleSessions},
		{"100 sessions x 16 upload handles out of order", d.handleMemory},
		{"small files", d.smallFiles},
		{"10k listing", d.listing},
		{"memory (idle after load)", d.idleAfter},
	}...)
	if *quick {
		steps = steps[:0]
		steps = append(steps, []struct {
			name string
			fn   func() error
		}{{"memory (idle)", d.idleMemory}, {"negotiated algorithms", d.negotiated},
			{"fixtures", d.fixtures}, {"1 GiB transfers", d.bigTransfers}}...)
	}
	start := time.Now()
	for _, s := range steps {
		d.logf("== %s", s.name)
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	d.res.Meta["bench_seconds"] = math.Round(time.Since(start).Seconds())
	d.res.Meta["loadavg_end"] = loadavg()
	d.res.evaluate()
	d.res.print(os.Stdout)
	if out != "" {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(d.res, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("\nresults written to %s\n", out)
	}
	return nil
}

func mkTarget(name, addr, user string, pid int) (target, error) {
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		return target{}, fmt.Errorf("%s: address %q is not host:port", name, addr)
	}
	return target{Name: name, Host: host, Port: port, User: user, PID: pid}, nil
}

func (d *driver) logf(format string, args ...any) {
	fmt.Fprintf(d.log, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// ---- running clients -------------------------------------------------------

// runResult is one client run.
type runResult struct {
	wall, cpu float64 // seconds; cpu is the client's user+system time
	stdout    string
	stderr    string
}

func runCmd(name string, args []string, env []string) (runResult, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	t0 := time.Now()
	err := cmd.Run()
	r := runResult{wall: time.Since(t0).Seconds(), stdout: so.String(), stderr: se.String()}
	if cmd.ProcessState != nil {
		r.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	if err != nil {
		return r, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, lastLines(se.String(), 5))
	}
	return r, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// sftp runs the stock OpenSSH client in batch mode against t.
func (d *driver) sftp(t target, batch []string, extra ...string) (runResult, error) {
	bf := filepath.Join(d.work, "batch")
	if err := os.WriteFile(bf, []byte(strings.Join(batch, "\n")+"\n"), 0o600); err != nil {
		return runResult{}, err
	}
	args := []string{"-b", bf, "-P", t.Port, "-i", d.key,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}
	args = append(args, extra...)
	args = append(args, t.User+"@"+t.Host)
	return runCmd("sftp", args, nil)
}

// ---- process accounting ------------------------------------------------------

// rssKiB reads VmRSS of pid.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuSeconds is utime+stime of pid (all threads).
func cpuSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// sampler records the peak RSS of pid every 100 ms until stopped.
type sampler struct {
	stop chan struct{}
	done chan struct{}
	peak int64
}

func sampleRSS(pid int) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			if v, err := rssKiB(pid); err == nil && v > s.peak {
				s.peak = v
			}
			select {
			case <-s.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return s
}

func (s *sampler) Stop() int64 { close(s.stop); <-s.done; return s.peak }

func mib(kib int64) float64 { return math.Round(float64(kib)/1024*10) / 10 }

// ---- steps -----------------------------------------------------------------

func (d *driver) idleMemory() error {
	time.Sleep(time.Second) // let start-up garbage settle
	v, err := rssKiB(d.gw.PID)
	if err != nil {
		return err
	}
	d.idleKiB = v
	d.res.add("rss_idle", "gateway", "MiB", mib(v))
	d.logf("gateway idle RSS %.1f MiB", mib(v))
	for _, t := range d.extra {
		if t.PID > 0 {
			if v, err := rssKiB(t.PID); err == nil {
				d.res.add("rss_idle", t.Name, "MiB", mib(v))
			}
		}
	}
	return nil
}

var kexRe = regexp.MustCompile(`kex: server->client cipher: (\S+) MAC: (\S+)`)
var kexAlgRe = regexp.MustCompile(`kex: algorithm: (\S+)`)

// negotiated records what a stock OpenSSH client ends up with.
func (d *driver) negotiated() error {
	for _, t := range d.all() {
		r, err := d.sftp(t, []string{"pwd"}, "-v")
		if err != nil {
			return err
		}
		alg := "?"
		if m := kexRe.FindStringSubmatch(r.stderr); m != nil {
			alg = m[1]
			if m[2] != "<implicit>" {
				alg += " + " + m[2]
			}
		}
		if m := kexAlgRe.FindStringSubmatch(r.stderr); m != nil {
			alg += " (kex " + m[1] + ")"
		}
		d.res.Negotiated[t.Name] = alg
		d.logf("%s negotiates %s", t.Name, alg)
	}
	return nil
}

func (d *driver) all() []target { return append([]target{d.gw, d.ossh}, d.extra...) }

type latencies struct {
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Min float64 `json:"min_ms"`
}

func (d *driver) sshload(args ...string) (runResult, error) {
	return runCmd(filepath.Join(d.bin, "sshload"), args, nil)
}

func (d *driver) logins() error {
	n := "200"
	type job struct {
		metric, target string
		args           []string
	}
	jobs := []job{
		{"login_key", "gateway", []string{"-addr", d.gw.Host + ":" + d.gw.Port, "-user", d.gw.User, "-hostkey", d.gwHostKey}},
		{"login_key", "openssh", []string{"-addr", d.ossh.Host + ":" + d.ossh.Port, "-user", d.ossh.User}},
	}
	if d.totpFile != "" {
		jobs = append(jobs, job{"login_totp", "gateway", []string{"-addr", d.gw.Host + ":" + d.gw.Port, "-totp", d.totpFile, "-hostkey", d.gwHostKey}})
	}
	for _, t := range d.extra {
		jobs = append(jobs, job{"login_key", t.Name, []string{"-addr", t.Host + ":" + t.Port, "-user", t.User}})
	}
	for _, j := range jobs {
		r, err := d.sshload(append([]string{"login", "-key", d.key, "-n", n}, j.args...)...)
		if err != nil {
			return err
		}
		var l latencies
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
			return fmt.Errorf("sshload output %q: %w", r.stdout, err)
		}
		d.res.add(j.metric+"_p50", j.target, "ms", l.P50)
		d.res.add(j.metric+"_p99", j.target, "ms", l.P99)
		d.logf("%s %s: p50 %.1f ms, p99 %.1f ms", j.metric, j.target, l.P50, l.P99)
	}
	return nil
}

func (d *driver) idleSessions() error {
	before, err := rssKiB(d.gw.PID)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(d.bin, "sshload"), "hold", "-key", d.key, "-n", "200",
		"-addr", d.gw.Host+":"+d.gw.Port, "-user", d.gw.User, "-hostkey", d.gwHostKey)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var se strings.Builder
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		return err
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		stdin.Close()
		_ = cmd.Wait()
		return fmt.Errorf("sshload hold: %s", lastLines(se.String(), 5))
	}
	time.Sleep(time.Second)
	v, err := rssKiB(d.gw.PID)
	stdin.Close()
	werr := cmd.Wait()
	if err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("sshload hold: %v: %s", werr, lastLines(se.String(), 5))
	}
	d.res.add("rss_200_sessions", "gateway", "MiB", mib(v))
	d.res.add("rss_per_session", "gateway", "KiB", math.Round(float64(v-before)/200))
	d.logf("gateway RSS with 200 idle sessions: %.1f MiB (%.0f KiB each)", mib(v), float64(v-before)/200)
	return nil
}

// handleSessions, handlesPerSession and handleAhead are the memory worst
// case of an authenticated client: every session opens all the handles
// the gateway allows and writes ahead of order on each. The gateway bounds
// it by its per-session reorder budget (session_write_buffer, 16 MiB).
const (
	handleSessions    = 100
	handlesPerSession = 16
	handleAhead       = 2 << 20 // 32 MiB tried per session, twice the budget
)

// handleMemoryBoundMiB is the stated bound for that case: per session the
// 16 MiB budget, half as much again for the garbage collector's headroom
// (GOGC=100: freed copies are reclaimed at the next cycle) and SSH/SFTP
// buffers, 24 MiB in all; plus the idle gateway (64 MiB at most).
// Measured on 2 cores: 2121 MiB (21 MiB per session); before the session
// budget the same load held 32 MiB of data per session (~42 MiB RSS), and
// a client writing further ahead up to 16 x 16 MiB.
const handleMemoryBoundMiB = handleSessions*24 + 64

func (d *driver) handleMemory() error {
	before, err := rssKiB(d.gw.PID)
	if err != nil {
		return err
	}
	s := sampleRSS(d.gw.PID)
	cmd := exec.Command(filepath.Join(d.bin, "sshload"), "handles", "-key", d.key, "-n", fmt.Sprint(handleSessions),
		"-handles", fmt.Sprint(handlesPerSession), "-ahead", fmt.Sprint(handleAhead),
		"-addr", d.gw.Host+":"+d.gw.Port, "-user", d.gw.User, "-hostkey", d.gwHostKey)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var se strings.Builder
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		return err
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var sum struct {
		Open     int64 `json:"handles_open"`
		Accepted int64 `json:"bytes_ahead_accepted"`
		Refused  int64 `json:"handles_refused_writing"`
	}
	if err := json.Unmarshal([]byte(line), &sum); err != nil {
		stdin.Close()
		_ = cmd.Wait()
		return fmt.Errorf("sshload handles: %q: %s", line, lastLines(se.String(), 5))
	}
	time.Sleep(time.Second)
	v, err := rssKiB(d.gw.PID)
	peak := s.Stop()
	stdin.Close()
	werr := cmd.Wait()
	if err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("sshload handles: %v: %s", werr, lastLines(se.String(), 5))
	}
	peak = max(peak, v)
	d.res.add("rss_100x16_handles", "gateway", "MiB", mib(peak))
	d.res.Meta["handles_open"] = sum.Open
	d.res.Meta["handles_refused_writing"] = sum.Refused
	d.res.Meta["reorder_bytes_held_mib"] = math.Round(float64(sum.Accepted) / (1 << 20))
	d.logf("gateway RSS peak with %d sessions x %d upload handles written %d MiB out of order: %.1f MiB (from %.1f; bound %d MiB); "+
		"%d handles open, %d refused a write over the session budget, %.0f MiB held",
		handleSessions, handlesPerSession, handleAhead>>20, mib(peak), mib(before), handleMemoryBoundMiB,
		sum.Open, sum.Refused, float64(sum.Accepted)/(1<<20))
	return nil
}

// fixtures creates the local files and the 10k-object directories.
func (d *driver) fixtures() error {
	d.big = filepath.Join(d.client, "big")
	if err := randomFile(d.big, d.bigSize); err != nil {
		return err
	}
	var err error
	if d.bigSHA, err = sha256File(d.big); err != nil {
		return err
	}
	small := filepath.Join(d.client, "small")
	if err := os.MkdirAll(small, 0o755); err != nil {
		return err
	}
	for i := range d.smallN {
		if err := randomFile(filepath.Join(small, fmt.Sprintf("f%04d", i)), 64<<10); err != nil {
			return err
		}
	}
	// The listing directory: objects straight into MinIO for the gateway
	// (and every extra S3 server: they all see the bench/ prefix), files
	// on disk for OpenSSH.
	if _, err := runCmd(filepath.Join(d.bin, "raws3"), []string{"mkobjects", d.bucket, "bench/list10k/f", strconv.Itoa(d.listN)}, nil); err != nil {
		return err
	}
	ld := filepath.Join(d.ossh.Dir, "list10k")
	if err := os.MkdirAll(ld, 0o755); err != nil {
		return err
	}
	for i := range d.listN {
		f, err := os.Create(filepath.Join(ld, fmt.Sprintf("f%06d", i)))
		if err != nil {
			return err
		}
		f.Close()
	}
	settle() // the fixtures' writeback must not slow the first transfers
	return nil
}

func randomFile(p string, n int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	// A fast non-cryptographic stream: incompressible enough for SSH and S3.
	buf := make([]byte, 1<<20)
	var x uint64 = 0x9e3779b97f4a7c15 ^ uint64(time.Now().UnixNano())
	for n > 0 {
		for i := 0; i+8 <= len(buf); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			binary.LittleEndian.PutUint64(buf[i:], x)
		}
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	return f.Close()
}

func sha256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// settle flushes dirty pages so one run's writeback does not slow the next.
func settle() { _ = exec.Command("sync").Run(); time.Sleep(200 * time.Millisecond) }

// transfer runs one put or get of the big file through t and records it.
func (d *driver) transfer(t target, dir, variant string, check bool, extra ...string) error {
	name := t.Name
	if variant != "" {
		name += " [" + variant + "]"
	}
	dl := filepath.Join(d.client, "dl")
	_ = os.Remove(dl)
	var batch []string
	if dir == "put" {
		batch = []string{"put " + d.big + " big"}
	} else {
		batch = []string{"get big " + dl}
	}
	var s *sampler
	var rssBefore int64
	if t.PID > 0 {
		rssBefore, _ = rssKiB(t.PID)
		s = sampleRSS(t.PID)
	}
	cpu0, mcpu0 := cpuSeconds(t.PID), cpuSeconds(d.minioPID)
	r, err := d.sftp(t, batch, extra...)
	cpu1, mcpu1 := cpuSeconds(t.PID), cpuSeconds(d.minioPID)
	var peak int64
	if s != nil {
		peak = s.Stop()
	}
	if err != nil {
		return err
	}
	d.res.add(dir+"_1g", name, "s", r.wall)
	d.res.add(dir+"_1g_client_cpu", name, "s", r.cpu)
	if t.PID > 0 {
		d.res.add(dir+"_1g_server_cpu", name, "s", cpu1-cpu0)
	}
	if t.Name != "openssh" && d.minioPID > 0 {
		d.res.add(dir+"_1g_minio_cpu", name, "s", mcpu1-mcpu0)
	}
	msg := fmt.Sprintf("%s %s: %.2f s (%.0f MB/s)", dir, name, r.wall, float64(d.bigSize)/r.wall/1e6)
	if s != nil {
		d.res.add(dir+"_1g_rss_peak", name, "MiB", mib(peak))
		// Growth over the gateway's idle RSS, not over the RSS just
		// before: the Go runtime returns freed memory lazily, so the
		// latter would hide what a transfer costs on a fresh process.
		base := rssBefore
		if t.Name == "gateway" && d.idleKiB > 0 {
			base = d.idleKiB
		}
		d.res.add(dir+"_1g_rss_growth", name, "MiB", mib(peak-base))
		msg += fmt.Sprintf(", server RSS peak %.1f MiB (+%.1f over idle), server CPU %.2f s", mib(peak), mib(peak-base), cpu1-cpu0)
	}
	d.logf("%s", msg)
	if check {
		if err := d.verify(t, dir, dl); err != nil {
			return err
		}
	}
	settle()
	return nil
}

// verify checks a transfer's result once per server: same bytes, and for
// S3-backed servers, encrypted at rest.
func (d *driver) verify(t target, dir, dl string) error {
	switch {
	case dir == "get":
		sum, err := sha256File(dl)
		if err != nil {
			return err
		}
		if sum != d.bigSHA {
			return fmt.Errorf("%s: downloaded file differs from the source", t.Name)
		}
	case t.Name == "openssh":
		sum, err := sha256File(filepath.Join(d.ossh.Dir, "big"))
		if err != nil {
			return err
		}
		if sum != d.bigSHA {
			return fmt.Errorf("openssh: uploaded file differs from the source")
		}
	case t.Name == "gateway":
		key := "bench/big"
		out, err := d.s3c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &d.bucket, Key: &key})
		if err != nil {
			return fmt.Errorf("gateway upload not in the bucket: %w", err)
		}
		if out.ContentLength == nil || *out.ContentLength != d.bigSize {
			return fmt.Errorf("gateway upload has the wrong size")
		}
		if out.ServerSideEncryption == "" {
			return fmt.Errorf("gateway upload is not encrypted at rest")
		}
	}
	return nil
}

func (d *driver) raw(dir string) error {
	var args []string
	if dir == "put" {
		args = []string{"put", d.big, d.bucket, "raw/big"}
	} else {
		dl := filepath.Join(d.client, "dl")
		_ = os.Remove(dl)
		args = []string{"get", d.bucket, "raw/big", dl}
	}
	mcpu0 := cpuSeconds(d.minioPID)
	r, err := runCmd(filepath.Join(d.bin, "raws3"), args, nil)
	mcpu1 := cpuSeconds(d.minioPID)
	if err != nil {
		return err
	}
	d.res.add(dir+"_1g", "raw-s3", "s", r.wall)
	d.res.add(dir+"_1g_client_cpu", "raw-s3", "s", r.cpu)
	if d.minioPID > 0 {
		d.res.add(dir+"_1g_minio_cpu", "raw-s3", "s", mcpu1-mcpu0)
	}
	d.logf("%s raw-s3: %.2f s (%.0f MB/s)", dir, r.wall, float64(d.bigSize)/r.wall/1e6)
	settle()
	return nil
}

func (d *driver) bigTransfers() error {
	// Interleaved, so drift (page cache, writeback, thermal) hits all alike.
	for rep := range d.reps {
		check := rep == 0
		if err := d.raw("put"); err != nil {
			return err
		}
		for _, t := range d.all() {
			if err := d.transfer(t, "put", "", check); err != nil {
				return err
			}
		}
		if err := d.raw("get"); err != nil {
			return err
		}
		for _, t := range d.all() {
			if err := d.transfer(t, "get", "", check); err != nil {
				return err
			}
		}
	}
	return nil
}

// variants shows what the levers are worth: 32 KiB requests (what a
// client gets without limits@openssh.com) and each cipher a stock client
// may negotiate.
func (d *driver) variants() error {
	vs := []struct {
		name string
		args []string
	}{
		{"32KiB requests", []string{"-B", "32768"}},
		{"chacha20-poly1305", []string{"-c", "chacha20-poly1305@openssh.com"}},
		{"aes128-gcm", []string{"-c", "aes128-gcm@openssh.com"}},
		{"aes128-ctr+hmac-sha2-256-etm", []string{"-c", "aes128-ctr", "-o", "MACs=hmac-sha2-256-etm@openssh.com"}},
	}
	for _, v := range vs {
		for _, t := range []target{d.gw, d.ossh} {
			// A cipher the server does not offer (the gateway leaves out
			// chacha20-poly1305) is noted, not a failure.
			if _, err := d.sftp(t, []string{"pwd"}, v.args...); err != nil {
				d.res.Notes = append(d.res.Notes, fmt.Sprintf("%s: %s not negotiable (not offered)", t.Name, v.name))
				d.logf("%s [%s]: not negotiable, skipped", t.Name, v.name)
				continue
			}
			for _, dir := range []string{"put", "get"} {
				if err := d.transfer(t, dir, v.name, false, v.args...); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (d *driver) smallFiles() error {
	reps := max(1, min(d.reps, 2))
	for rep := range reps {
		// The floor for any S3 gateway: one PUT after the other, as an
		// SFTP client uploads files in one session.
		r, err := runCmd(filepath.Join(d.bin, "raws3"), []string{"mkobjects", "-size", "65536", "-workers", "1",
			d.bucket, fmt.Sprintf("raw/small%d/f", rep), strconv.Itoa(d.smallN)}, nil)
		if err != nil {
			return err
		}
		d.res.add("small_files", "raw-s3 (sequential PUT)", "files/s", math.Round(float64(d.smallN)/r.wall))
		d.logf("%d x 64 KiB sequential PUTs: %.2f s", d.smallN, r.wall)
		for _, t := range d.all() {
			dir := fmt.Sprintf("small%d", rep)
			r, err := d.sftp(t, []string{"-mkdir " + dir, "put " + filepath.Join(d.client, "small", "*") + " " + dir + "/"})
			if err != nil {
				return err
			}
			d.res.add("small_files", t.Name, "files/s", math.Round(float64(d.smallN)/r.wall))
			d.logf("%d x 64 KiB through %s: %.2f s (%.0f files/s)", d.smallN, t.Name, r.wall, float64(d.smallN)/r.wall)
			settle()
		}
	}
	return nil
}

func (d *driver) listing() error {
	for range d.reps {
		for _, t := range d.all() {
			r, err := d.sftp(t, []string{"ls -1 list10k"})
			if err != nil {
				return err
			}
			if n := strings.Count(r.stdout, "\n"); n < d.listN {
				return fmt.Errorf("%s: ls -1 showed %d lines, want %d entries", t.Name, n, d.listN)
			}
			d.res.add("list_10k", t.Name, "s", r.wall)
			d.logf("ls -1 of %d entries through %s: %.2f s", d.listN, t.Name, r.wall)
		}
	}
	return nil
}

func (d *driver) idleAfter() error {
	time.Sleep(2 * time.Second)
	v, err := rssKiB(d.gw.PID)
	if err != nil {
		return err
	}
	d.res.add("rss_idle_after_load", "gateway", "MiB", mib(v))
	return nil
}

// ---- results ---------------------------------------------------------------

type series struct {
	Unit    string    `json:"unit"`
	Samples []float64 `json:"samples"`
	Min     float64   `json:"min"`
	Median  float64   `json:"median"`
	Max     float64   `json:"max"`
}

type check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail"`
}

type results struct {
	mu         sync.Mutex
	Meta       map[string]any                `json:"meta"`
	Negotiated map[string]string             `json:"negotiated"`
	Metrics    map[string]map[string]*series `json:"metrics"` // metric -> server -> series
	Ratios     map[string]float64            `json:"ratios"`
	Targets    []check                       `json:"targets"`
	Notes      []string                      `json:"notes,omitempty"`
	order      []string
}

func newResults() *results {
	return &results{Negotiated: map[string]string{}, Metrics: map[string]map[string]*series{}, Ratios: map[string]float64{}}
}

func (r *results) add(metric, server, unit string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.Metrics[metric]
	if !ok {
		m = map[string]*series{}
		r.Metrics[metric] = m
	}
	s, ok := m[server]
	if !ok {
		s = &series{Unit: unit}
		m[server] = s
		r.order = append(r.order, metric+"\x00"+server)
	}
	s.Samples = append(s.Samples, math.Round(v*1000)/1000)
	sorted := append([]float64(nil), s.Samples...)
	sort.Float64s(sorted)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	if n := len(sorted); n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = math.Round((sorted[n/2-1]+sorted[n/2])/2*1000) / 1000
	}
}

// med returns the median of metric for server, or NaN.
func (r *results) med(metric, server string) float64 {
	if s, ok := r.Metrics[metric][server]; ok {
		return s.Median
	}
	return math.NaN()
}

func (r *results) evaluate() {
	gp, op, rp := r.med("put_1g", "gateway"), r.med("put_1g", "openssh"), r.med("put_1g", "raw-s3")
	gg, og, rg := r.med("get_1g", "gateway"), r.med("get_1g", "openssh"), r.med("get_1g", "raw-s3")
	// Minima too: on a shared machine the fastest run is the least disturbed.
	gpm, opm, rpm := r.minOf("put_1g", "gateway"), r.minOf("put_1g", "openssh"), r.minOf("put_1g", "raw-s3")
	ggm, ogm := r.minOf("get_1g", "gateway"), r.minOf("get_1g", "openssh")
	r.Ratios["upload gateway/openssh"] = round2(gp / op)
	r.Ratios["upload gateway/raw-s3"] = round2(gp / rp)
	r.Ratios["download gateway/openssh"] = round2(gg / og)
	r.Ratios["download gateway/raw-s3"] = round2(gg / rg)
	idle := r.med("rss_idle", "gateway")
	r.Targets = []check{
		{Name: "upload <= 1.3 x max(OpenSSH->disk, raw S3 PUT)", Value: round2(gp / math.Max(op, rp)), Limit: 1.3, Unit: "x",
			Detail: fmt.Sprintf("medians %.2f s vs %.2f s; minima %.2f s vs %.2f s = %.2f x", gp, math.Max(op, rp), gpm, math.Max(opm, rpm), gpm/math.Max(opm, rpm))},
		{Name: "download <= 1.3 x OpenSSH->disk", Value: round2(gg / og), Limit: 1.3, Unit: "x",
			Detail: fmt.Sprintf("medians %.2f s vs %.2f s; minima %.2f s vs %.2f s = %.2f x", gg, og, ggm, ogm, ggm/ogm)},
		{Name: "RSS idle <= 64 MiB", Value: idle, Limit: 64, Unit: "MiB"},
		{Name: "RSS growth per active upload <= 32 MiB", Value: r.maxOf("put_1g_rss_growth", "gateway"), Limit: 32, Unit: "MiB"},
		{Name: "RSS growth per active download <= 32 MiB", Value: r.maxOf("get_1g_rss_growth", "gateway"), Limit: 32, Unit: "MiB"},
		{Name: "RSS with 200 idle sessions <= 200 MiB", Value: r.med("rss_200_sessions", "gateway"), Limit: 200, Unit: "MiB"},
		{Name: fmt.Sprintf("RSS, %d sessions x %d handles out of order <= %d MiB", handleSessions, handlesPerSession, handleMemoryBoundMiB),
			Value: r.med("rss_100x16_handles", "gateway"), Limit: handleMemoryBoundMiB, Unit: "MiB"},
		{Name: "login p50 (key) <= 20 ms", Value: r.med("login_key_p50", "gateway"), Limit: 20, Unit: "ms"},
		{Name: "login p50 (key+TOTP) <= 20 ms", Value: r.med("login_totp_p50", "gateway"), Limit: 20, Unit: "ms"},
		{Name: "ls of 10k objects <= 1 s", Value: r.med("list_10k", "gateway"), Limit: 1, Unit: "s"},
	}
	for i := range r.Targets {
		t := &r.Targets[i]
		t.Met = !math.IsNaN(t.Value) && t.Value <= t.Limit
	}
}

func (r *results) minOf(metric, server string) float64 {
	if s, ok := r.Metrics[metric][server]; ok {
		return s.Min
	}
	return math.NaN()
}

func (r *results) maxOf(metric, server string) float64 {
	if s, ok := r.Metrics[metric][server]; ok {
		return s.Max
	}
	return math.NaN()
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// labels names the metrics in the table; sizes come from the run's settings.
func (r *results) labels() map[string]string {
	big := fmt.Sprintf("%v", r.Meta["big_label"])
	return map[string]string{
		"put_1g":              big + " upload",
		"get_1g":              big + " download",
		"put_1g_client_cpu":   "  client CPU (upload)",
		"get_1g_client_cpu":   "  client CPU (download)",
		"put_1g_server_cpu":   "  server CPU (upload)",
		"get_1g_server_cpu":   "  server CPU (download)",
		"put_1g_minio_cpu":    "  MinIO CPU (upload)",
		"get_1g_minio_cpu":    "  MinIO CPU (download)",
		"put_1g_rss_peak":     "  server RSS peak (upload)",
		"get_1g_rss_peak":     "  server RSS peak (download)",
		"put_1g_rss_growth":   "  server RSS over idle (upload)",
		"get_1g_rss_growth":   "  server RSS over idle (download)",
		"small_files":         fmt.Sprintf("%v x 64 KiB upload", r.Meta["small_files"]),
		"list_10k":            fmt.Sprintf("ls -1 of %v entries", r.Meta["list_entries"]),
		"login_key_p50":       "login key-only p50",
		"login_key_p99":       "login key-only p99",
		"login_totp_p50":      "login key+TOTP p50",
		"login_totp_p99":      "login key+TOTP p99",
		"rss_idle":            "RSS idle",
		"rss_200_sessions":    "RSS, 200 idle sessions",
		"rss_per_session":     "  per idle session",
		"rss_100x16_handles":  "RSS peak, 100 sessions x 16 handles out of order",
		"rss_idle_after_load": "RSS idle after the run",
	}
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nsftpgw benchmark  %v  (%v CPUs, %v; %v)\n", r.Meta["time"], r.Meta["cpus"], r.Meta["cpu"], r.Meta["gateway_version"])
	fmt.Fprintf(w, "load average before/after: %v / %v (above ~0.5, other processes shared the CPUs)\n\n", r.Meta["loadavg_start"], r.Meta["loadavg_end"])
	fmt.Fprintf(w, "%-34s %-34s %8s %8s %8s  %s\n", "measurement", "server", "min", "median", "max", "unit (n)")
	fmt.Fprintln(w, strings.Repeat("-", 112))
	// Group rows by metric in first-seen order.
	var metrics []string
	seen := map[string]bool{}
	for _, k := range r.order {
		m, _, _ := strings.Cut(k, "\x00")
		if !seen[m] {
			seen[m] = true
			metrics = append(metrics, m)
		}
	}
	labels := r.labels()
	for _, m := range metrics {
		label := labels[m]
		if label == "" {
			label = m
		}
		for _, k := range r.order {
			km, server, _ := strings.Cut(k, "\x00")
			if km != m {
				continue
			}
			s := r.Metrics[m][server]
			fmt.Fprintf(w, "%-34s %-34s %8s %8s %8s  %s (%d)\n", label, server, num(s.Min), num(s.Median), num(s.Max), s.Unit, len(s.Samples))
			label = ""
		}
	}
	fmt.Fprintln(w, "\nnegotiated with stock OpenSSH sftp:")
	for _, k := range sortedKeys(r.Negotiated) {
		fmt.Fprintf(w, "  %-10s %s\n", k, r.Negotiated[k])
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintln(w, "\nratios (medians; < 1 is faster than the reference):")
	for _, k := range sortedKeys(r.Ratios) {
		fmt.Fprintf(w, "  %-28s %.2f\n", k, r.Ratios[k])
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range r.Targets {
		mark := "MET "
		if !t.Met {
			mark = "MISS"
		}
		fmt.Fprintf(w, "  [%s] %-48s %8s %s  %s\n", mark, t.Name, num(t.Value), t.Unit, t.Detail)
	}
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func meta(d *driver) map[string]any {
	m := map[string]any{
		"time": time.Now().UTC().Format(time.RFC3339), "cpus": runtime.NumCPU(), "go": runtime.Version(),
		"loadavg_start": loadavg(),
		"reps":          d.reps, "big_bytes": d.bigSize, "big_label": sizeLabel(d.bigSize), "small_files": d.smallN, "list_entries": d.listN,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, v, _ := strings.Cut(l, ":")
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m["openssh"] = strings.TrimSpace(string(out))
	}
	if v := os.Getenv("SFTPGW_VERSION"); v != "" {
		m["gateway_version"] = v
	}
	return m
}

// loadavg is the 1-minute load average.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func parseSize(s string) (int64, error) {
	mul := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suf) {
			s, mul = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mul, nil
}

func sizeLabel(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d B", n)
}
