package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// File times through real clients: kept in X-Amz-Meta-Mtime (rclone's
// key and format) next to SSE, shown by stat and listings in OpenSSH's
// layout. Times are built in the local zone (the suite must pass under any
// TZ) and compared as instants.

// timesFile writes size random bytes at dir/name with modification time mt.
func timesFile(t *testing.T, dir, name string, size int64, mt time.Time) (string, string) {
	t.Helper()
	p, sum := randomFile(t, dir, name, size)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
	return p, sum
}

// wantObjectTime checks the object's stored time (rclone's format: whole
// seconds here, as SFTP carries no fraction) and that it is still encrypted.
func wantObjectTime(t *testing.T, c *s3.Client, bucket, key string, mt time.Time) {
	t.Helper()
	out, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("head %s: %v", key, err)
	}
	if got, want := out.Metadata["mtime"], strconv.FormatInt(mt.Unix(), 10); got != want {
		t.Errorf("%s: X-Amz-Meta-Mtime %q; want %q", key, got, want)
	}
	if out.ServerSideEncryption != types.ServerSideEncryptionAes256 {
		t.Errorf("%s: SSE %q after its time was set", key, out.ServerSideEncryption)
	}
}

func wantFileTime(t *testing.T, p string, mt time.Time) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.ModTime().Unix() != mt.Unix() {
		t.Errorf("%s: mtime %v; want %v", p, fi.ModTime(), mt)
	}
}

// TestTimesOpenSSH: put -p keeps the source's time, for a single-part file
// (folded into the PutObject) and a multipart one (its time arrives after
// the first part: set by a copy after the commit); ls -l lists it in
// OpenSSH's layout, get -p (a stat) brings it back.
func TestTimesOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := cliHome(u)
	dir := t.TempDir()
	files := []struct {
		name string
		size int64
		mt   time.Time
	}{
		{"old.txt", 1000, time.Date(2020, 1, 2, 3, 4, 5, 0, time.Local)},
		{"big.bin", 9<<20 + 17, time.Date(2021, 6, 7, 8, 9, 10, 0, time.Local)},
		{"recent.txt", 12345, time.Now().Add(-2 * time.Hour).Truncate(time.Second)},
	}
	sums := map[string]string{}
	cmds := []string{"mkdir t"}
	for _, f := range files {
		var p string
		p, sums[f.name] = timesFile(t, dir, f.name, f.size, f.mt)
		cmds = append(cmds, "put -p "+p+" t/"+f.name)
	}
	back := filepath.Join(dir, "back")
	if err := os.Mkdir(back, 0o755); err != nil {
		t.Fatal(err)
	}
	cmds = append(cmds, "ls -l t", "get -p t/old.txt "+back+"/", "get -p t/big.bin "+back+"/")
	out, err := g.SFTP(u, strings.Join(cmds, "\n"))
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	now := time.Now()
	for _, f := range files {
		mustContain(t, out, lsFileLine(f.name, f.size, f.mt, now))
		cliCheck(t, c, bucket, home+"t/"+f.name, sums[f.name])
		wantObjectTime(t, c, bucket, home+"t/"+f.name, f.mt)
		if len(g.Events.Find(audit.Event{Op: "setstat", Path: "/t/" + f.name, Result: "ok",
			Detail: "mtime " + f.mt.UTC().Format(time.RFC3339)})) != 1 {
			t.Errorf("%s: no audited setstat with its time", f.name)
		}
	}
	wantFileTime(t, filepath.Join(back, "old.txt"), files[0].mt)
	wantFileTime(t, filepath.Join(back, "big.bin"), files[1].mt)
	cliCheckAll(t, c, bucket)
}

// TestTimesWinSCPStyle: upload to .filepart, rename, then setstat the
// times (WinSCP's order): a server-side copy of the stored object that
// keeps content and SSE; a directory takes a time too (on its marker).
func TestTimesWinSCPStyle(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := cliHome(u)
	cl, _ := cliSFTP(t, g, u)
	data := []byte(strings.Repeat("report;", 1000))
	if err := cl.Mkdir("in"); err != nil {
		t.Fatal(err)
	}
	f, err := cl.Create("in/report.csv.filepart")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Rename("in/report.csv.filepart", "in/report.csv"); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2019, 12, 31, 23, 59, 58, 0, time.Local)
	dmt := time.Date(2018, 3, 4, 5, 6, 7, 0, time.Local)
	if err := cl.Chtimes("in/report.csv", mt, mt); err != nil {
		t.Fatal(err)
	}
	if err := cl.Chtimes("in", dmt, dmt); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]time.Time{"in/report.csv": mt, "in": dmt} {
		fi, err := cl.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(want) {
			t.Errorf("stat %s: %v; want %v", p, fi.ModTime(), want)
		}
	}
	ents, err := cl.ReadDir("/")
	if err != nil || len(ents) != 1 || !ents[0].ModTime().Equal(dmt) {
		t.Errorf("listing of / : %v, %v; want in with %v", ents, err, dmt)
	}
	cliCheck(t, c, bucket, home+"in/report.csv", cliSHA(data))
	wantObjectTime(t, c, bucket, home+"in/report.csv", mt)
	wantObjectTime(t, c, bucket, home+"in/", dmt)
	if exists(t, c, bucket, home+"in/report.csv.filepart") {
		t.Error(".filepart left behind")
	}
	cliCheckAll(t, c, bucket)
}

// TestTimesPscp: PuTTY's SFTP engine (psftp's, FileZilla's) uploading with
// "preserve" (pscp -p) keeps the file's time.
func TestTimesPscp(t *testing.T) {
	needTool(t, "pscp")
	needTool(t, "puttygen")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	mt := time.Date(2022, 2, 3, 4, 5, 6, 0, time.Local)
	p, sum := timesFile(t, dir, "scan.pdf", 54321, mt)
	run := cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir)}
	out, err := run.run(t, "pscp", "-sftp", "-p", "-batch", "-hostkey", cliFingerprint(t, g), "-i", cliPPK(t, u, dir),
		"-P", fmt.Sprint(g.Port), p, u.Name+"@"+g.Host+":/scan.pdf")
	if err != nil {
		t.Fatalf("pscp -p: %v\n%s", err, out)
	}
	cliCheck(t, c, bucket, cliHome(u)+"scan.pdf", sum)
	wantObjectTime(t, c, bucket, cliHome(u)+"scan.pdf", mt)
}

// TestTimesSSHFS: on an sshfs mount, cp -p and touch -d set times, and a
// second rsync -a finds nothing to transfer.
func TestTimesSSHFS(t *testing.T) {
	needTool(t, "rsync")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	mnt := sshfsMount(t, g, u, dir)
	sh := func(cmd string) string {
		t.Helper()
		out, err := cliRun{dir: dir, timeout: 2 * time.Minute}.run(t, "sh", "-c", cmd)
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return out
	}
	settled := func() {
		t.Helper()
		waitFor(t, 30*time.Second, "sshfs uploads to be committed", func() bool { return g.Server.Uploads().Active() == 0 })
	}
	mt := time.Date(2020, 5, 6, 7, 8, 9, 0, time.Local)
	timesFile(t, dir, "cv.pdf", 4321, mt)
	sh("cp -p cv.pdf " + mnt + "/cv.pdf")
	settled()
	wantFileTime(t, filepath.Join(mnt, "cv.pdf"), mt)
	wantObjectTime(t, c, bucket, cliHome(u)+"cv.pdf", mt)

	sh("touch -d '2020-01-02 03:04' " + mnt + "/cv.pdf")
	touched := time.Date(2020, 1, 2, 3, 4, 0, 0, time.Local)
	wantFileTime(t, filepath.Join(mnt, "cv.pdf"), touched)
	wantObjectTime(t, c, bucket, cliHome(u)+"cv.pdf", touched)

	src := filepath.Join(dir, "tree")
	sums := cliTree(t, src, map[string]int64{"a.txt": 100, "sub/b.bin": 70000, "sub/c.bin": 6 << 20})
	for i, rel := range []string{"a.txt", "sub/b.bin", "sub/c.bin"} {
		ft := time.Date(2023, 7, 1+i, 12, 0, 0, 0, time.Local)
		if err := os.Chtimes(filepath.Join(src, rel), ft, ft); err != nil {
			t.Fatal(err)
		}
	}
	first := sh("rsync -a --stats tree/ " + mnt + "/rs/")
	settled()
	mustContain(t, first, "Number of regular files transferred: 3")
	second := sh("rsync -a --stats tree/ " + mnt + "/rs/")
	if !strings.Contains(second, "Number of regular files transferred: 0") {
		t.Errorf("second rsync -a transferred files again:\n%s", second)
	}
	for rel, sum := range sums {
		cliCheck(t, c, bucket, cliHome(u)+"rs/"+rel, sum)
	}
	wantFileTime(t, filepath.Join(mnt, "rs/sub/c.bin"), time.Date(2023, 7, 3, 12, 0, 0, 0, time.Local))
	cliCheckAll(t, c, bucket)
}

// sshfsMount mounts u's view of the gateway under dir/mnt until the test ends.
func sshfsMount(t *testing.T, g *testgw.Gateway, u *testgw.User, dir string) string {
	t.Helper()
	needTool(t, "sshfs")
	needTool(t, "fusermount3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("SFTPGW_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("no /dev/fuse: %v", err)
		}
		t.Skip("no /dev/fuse")
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := strings.Join([]string{"IdentityFile=" + u.KeyPath, "IdentitiesOnly=yes", "UserKnownHostsFile=" + g.KnownHosts,
		"StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null", "PasswordAuthentication=no", "ConnectTimeout=20"}, ",")
	run := cliRun{env: g.ClientEnv(u, ""), timeout: time.Minute}
	if out, err := run.run(t, "sshfs", "-p", fmt.Sprint(g.Port), "-o", opts, u.Name+"@"+g.Host+":/", mnt); err != nil {
		t.Fatalf("sshfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
			t.Logf("fusermount3 -u: %v %s; unmounting lazily", err, out)
			_ = exec.Command("fusermount3", "-uz", mnt).Run()
		}
	})
	return mnt
}

// TestListingMatchesOpenSSH lists the same files, with the same times and
// modes, through the gateway and through OpenSSH's own sftp-server (the
// code sshd runs as internal-sftp, here on its stdin/stdout: no port, no
// root), and compares the long names of the READDIR replies byte for byte,
// owner and group aside (objects have none: the gateway shows 0, padded as
// OpenSSH pads names). Files: from today, from a day 1-9 of a recent
// month, from years ago, from the future, and empty.
func TestListingMatchesOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	const server = "/usr/lib/openssh/sftp-server"
	if _, err := os.Stat(server); err != nil {
		if os.Getenv("SFTPGW_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("OpenSSH's sftp-server is missing: %v", err)
		}
		t.Skip("no " + server)
	}
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	home := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	recent := now.AddDate(0, -2, 0)
	files := []struct {
		name string
		size int64
		mt   time.Time
	}{
		{"today.txt", 1000, now.Add(-30 * time.Minute).Truncate(time.Second)},
		{"early.txt", 70000, time.Date(recent.Year(), recent.Month(), 5, 14, 30, 0, 0, time.Local)},
		{"old.txt", 1234567, time.Date(now.Year()-2, 3, 7, 9, 8, 7, 0, time.Local)},
		{"future.txt", 12, now.Add(48 * time.Hour).Truncate(time.Second)},
		{"empty.txt", 0, time.Date(now.Year()-1, 12, 31, 23, 59, 59, 0, time.Local)},
	}
	var puts []string
	for _, f := range files {
		p, _ := timesFile(t, home, f.name, f.size, f.mt)
		if err := os.Chmod(p, 0o640); err != nil { // the gateway's fixed file mode
			t.Fatal(err)
		}
		puts = append(puts, "put -p "+p+" ls/"+f.name)
	}
	if out, err := g.SFTP(u, "mkdir ls\n"+strings.Join(puts, "\n")); err != nil {
		t.Fatalf("sftp to the gateway: %v\n%s", err, out)
	}
	cmd := exec.Command(server)
	cmd.Dir = home
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	ref := rawLongNames(rawOver(t, in, outp), ".")
	got := rawLongNames(newRawSFTP(t, dialGo(t, g, u)), "/ls")
	for _, f := range files {
		want, ok := ref[f.name]
		if !ok {
			t.Fatalf("OpenSSH did not list %s: %q", f.name, ref)
		}
		fields := strings.Fields(want)
		want = strings.Replace(want, fmt.Sprintf(" %-8s %-8s ", fields[2], fields[3]), fmt.Sprintf(" %-8s %-8s ", "0", "0"), 1)
		if got[f.name] != want {
			t.Errorf("%s:\n gateway %q\n OpenSSH %q (owner and group made 0)", f.name, got[f.name], want)
		} else {
			t.Logf("both: %q", want)
		}
		if !strings.Contains(want, " "+lsDate(f.mt, time.Now())+" ") {
			t.Errorf("%s: OpenSSH shows %q, the suite's lsDate %q", f.name, want, lsDate(f.mt, time.Now()))
		}
	}
}

// rawOver starts an SFTP session on a bare stream (a local sftp-server).
func rawOver(t *testing.T, w io.WriteCloser, r io.Reader) *rawSFTP {
	t.Helper()
	p := &rawSFTP{t: t, w: w, r: r, exts: map[string]string{}}
	p.send(fxpInit, rawU32(3))
	if typ, _ := p.recv(); typ != fxpVersion {
		t.Fatalf("no VERSION reply (type %d)", typ)
	}
	return p
}

// rawLongNames reads directory dir and maps each name to its long name.
func rawLongNames(p *rawSFTP, dir string) map[string]string {
	p.t.Helper()
	const fxpOpendir, fxpReaddir, fxpName = 11, 12, 104
	typ, body := p.request(fxpOpendir, rawStr(dir))
	if typ != fxpHandle {
		p.t.Fatalf("opendir %s: reply type %d", dir, typ)
	}
	handle, _ := rawParseStr(p.t, body)
	m := map[string]string{}
	for {
		typ, body = p.request(fxpReaddir, rawStr(handle))
		if typ != fxpName {
			break // STATUS: end of directory
		}
		n := binary.BigEndian.Uint32(body)
		rest := body[4:]
		for range n {
			var name, long string
			name, rest = rawParseStr(p.t, rest)
			long, rest = rawParseStr(p.t, rest)
			rest = rawSkipAttrs(p.t, rest)
			m[name] = long
		}
	}
	p.request(fxpClose, rawStr(handle))
	return m
}

// rawSkipAttrs skips one SFTP v3 ATTRS block.
func rawSkipAttrs(t *testing.T, b []byte) []byte {
	t.Helper()
	if len(b) < 4 {
		t.Fatal("short attrs")
	}
	flags := binary.BigEndian.Uint32(b)
	n := 4
	for _, f := range []struct {
		bit  uint32
		size int
	}{{0x1, 8}, {0x2, 8}, {0x4, 4}, {0x8, 8}} {
		if flags&f.bit != 0 {
			n += f.size
		}
	}
	if len(b) < n {
		t.Fatal("short attrs")
	}
	b = b[n:]
	if flags&0x80000000 != 0 {
		count := binary.BigEndian.Uint32(b)
		b = b[4:]
		for range 2 * count {
			_, b = rawParseStr(t, b)
		}
	}
	return b
}
