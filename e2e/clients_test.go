package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// The client matrix: every client a partner, an applicant or HR staff is
// known to use, against the real gateway over MinIO. Each test logs in
// (key, or key + TOTP for HR), uploads, lists, renames, deletes and, where
// the role allows, downloads, then checks every object by SHA-256 and SSE
// straight in S3. e2e/COMPATIBILITY.md summarises what they prove.

// cliTreeFiles is a small directory tree with a multipart-sized member (the
// default part size is 8 MiB) and an empty directory.
var cliTreeFiles = map[string]int64{
	"a.txt":            1000,
	"sub/b.bin":        70000,
	"sub/deep/c.bin":   9<<20 + 17,
	"sub/deep/zero.nu": 0,
}

// TestClientOpenSSH drives OpenSSH sftp in batch mode as a partner:
// put -r of a tree, ls -l sizes and times, rename, get -r, rm, and the
// resume commands: reput must fail cleanly and leave the object as it
// was (objects cannot be appended to), reget must complete a download.
func TestClientOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := cliHome(u)
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	sums := cliTree(t, src, cliTreeFiles)
	if err := os.MkdirAll(filepath.Join(src, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "back")
	out, err := g.SFTP(u, strings.Join([]string{
		"put -r " + src + " tree",
		"ls -l tree",
		"ls -l tree/sub",
		"ls -l tree/sub/deep",
		"rename tree/a.txt tree/a2.txt",
		"get -r tree " + back,
		"rm tree/sub/b.bin",
		"ls -1 tree/sub",
	}, "\n"))
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	// Whole lines, in OpenSSH's layout, dated by the object's own time
	// (not today's date: the upload may straddle midnight).
	now := time.Now()
	mustContain(t, out, lsFileLine("c.bin", 9<<20+17, lastModified(t, c, bucket, home+"tree/sub/deep/c.bin"), now),
		lsFileLine("zero.nu", 0, lastModified(t, c, bucket, home+"tree/sub/deep/zero.nu"), now),
		" 1000 ", " 70000 ")
	if _, after, _ := strings.Cut(out, "ls -1 tree/sub"); strings.Contains(after, "b.bin") {
		t.Errorf("b.bin still listed after rm:\n%s", after)
	}
	cliCheck(t, c, bucket, home+"tree/a2.txt", sums["a.txt"])
	cliCheck(t, c, bucket, home+"tree/sub/deep/c.bin", sums["sub/deep/c.bin"])
	cliCheck(t, c, bucket, home+"tree/sub/deep/zero.nu", sums["sub/deep/zero.nu"])
	assertSSE(t, c, bucket, home+"tree/empty/")
	for _, gone := range []string{"tree/a.txt", "tree/sub/b.bin"} {
		if exists(t, c, bucket, home+gone) {
			t.Errorf("%s still exists", gone)
		}
	}
	for rel, sum := range sums {
		if rel == "a.txt" {
			rel = "a2.txt"
		}
		if got := fileSHA(t, filepath.Join(back, rel)); got != sum {
			t.Errorf("downloaded %s: sha %s, want %s", rel, got, sum)
		}
	}

	// Resume. The object r holds the first MiB of big; reput would append
	// the rest, which an object cannot take: refused at open, unchanged.
	big, bigSum := randomFile(t, dir, "big", 3<<20)
	head := filepath.Join(dir, "head")
	cliCopyPrefix(t, big, head, 1<<20)
	headSum := fileSHA(t, head)
	if out, err := g.SFTP(u, "put "+head+" r"); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	out, err = g.SFTP(u, "reput "+big+" r")
	if err == nil {
		t.Fatalf("reput succeeded:\n%s", out)
	}
	mustContain(t, out, "Operation unsupported")
	cliCheck(t, c, bucket, home+"r", headSum)
	if len(g.Events.Find(audit.Event{Op: "overwrite", Path: "/r", ErrClass: "unsupported"})) != 1 {
		t.Errorf("refused reput not audited: %+v", g.Events.Find(audit.Event{Path: "/r"}))
	}
	// reget: the local file holds a prefix of the object; the rest comes
	// with a ranged read.
	if out, err := g.SFTP(u, "put "+big+" big"); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	partial := filepath.Join(dir, "partial")
	cliCopyPrefix(t, big, partial, 1<<20+12345)
	if out, err := g.SFTP(u, "reget big "+partial); err != nil {
		t.Fatalf("reget: %v\n%s", err, out)
	}
	if got := fileSHA(t, partial); got != bigSum {
		t.Errorf("reget result sha %s, want %s", got, bigSum)
	}
	cliCheckAll(t, c, bucket)
}

// cliCopyPrefix writes the first n bytes of src to dst.
func cliCopyPrefix(t *testing.T, src, dst string, n int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.CopyN(out, in, n); err != nil {
		t.Fatal(err)
	}
}

// TestClientOpenSSHRoles covers the other two interactive roles with
// OpenSSH: an applicant uploads but may not download; HR logs in with key
// plus TOTP and sees every applicant's files.
func TestClientOpenSSHRoles(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	a := g.AddUser("applicant", false)
	hr := g.AddUser("hr", true)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	p, sum := randomFile(t, dir, "cv.pdf", 234567)
	out, err := g.SFTP(a, "put "+p+" cv.pdf\nls -l\nrename cv.pdf cv-2026.pdf")
	if err != nil {
		t.Fatalf("applicant: %v\n%s", err, out)
	}
	mustContain(t, out, "234567", "cv.pdf")
	cliCheck(t, c, bucket, cliHome(a)+"cv-2026.pdf", sum)
	out, err = g.SFTP(a, "get cv-2026.pdf "+filepath.Join(dir, "x"))
	if err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("applicant download: err=%v\n%s", err, out)
	}

	back := filepath.Join(dir, "back.pdf")
	out, err = g.SFTP(hr, fmt.Sprintf("ls -l %s\nget %s/cv-2026.pdf %s\nput %s %s/hr-note.pdf\nrm %s/cv-2026.pdf",
		a.Name, a.Name, back, p, a.Name, a.Name))
	if err != nil {
		t.Fatalf("hr: %v\n%s", err, out)
	}
	mustContain(t, out, "cv-2026.pdf")
	if got := fileSHA(t, back); got != sum {
		t.Errorf("hr download sha %s, want %s", got, sum)
	}
	cliCheck(t, c, bucket, "user/"+a.Name+"/hr-note.pdf", sum)
	if exists(t, c, bucket, "user/"+a.Name+"/cv-2026.pdf") {
		t.Error("hr rm left the object")
	}
	// A wrong code is refused (the code is checked, not just asked for).
	if out, err := g.SFTPWithCode(hr, "000000", "ls"); err == nil {
		t.Errorf("hr logged in with a wrong code:\n%s", out)
	}
	cliCheckAll(t, c, bucket)
}

// TestClientWinSCPStyle uploads the way WinSCP and FileZilla-like tools
// do: to "name.filepart", then rename onto the final name (replacing an
// older version), then set times and permissions (put -p, chmod), which
// the gateway accepts as no-ops.
func TestClientWinSCPStyle(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := cliHome(u)
	dir := t.TempDir()
	v1, sum1 := randomFile(t, dir, "v1", 3<<20)
	v2, sum2 := randomFile(t, dir, "v2", 12<<20+3)
	v3, sum3 := randomFile(t, dir, "v3", 4096)
	out, err := g.SFTP(u, strings.Join([]string{
		"put " + v1 + " report.csv.filepart",
		"rename report.csv.filepart report.csv",
	}, "\n"))
	if err != nil {
		t.Fatalf("first version: %v\n%s", err, out)
	}
	cliCheck(t, c, bucket, home+"report.csv", sum1)
	// A new version: OpenSSH renames with posix-rename (replace), SFTP v3
	// clients such as WinSCP delete the target first and use plain rename.
	out, err = g.SFTP(u, strings.Join([]string{
		"put " + v2 + " report.csv.filepart",
		"rename report.csv.filepart report.csv",
		"put " + v3 + " report.csv.filepart",
		"rm report.csv",
		"rename -l report.csv.filepart report.csv",
	}, "\n"))
	if err != nil {
		t.Fatalf("new versions: %v\n%s", err, out)
	}
	cliCheck(t, c, bucket, home+"report.csv", sum3)
	if exists(t, c, bucket, home+"report.csv.filepart") {
		t.Error(".filepart left behind")
	}
	// Legacy rename onto an existing name is refused (SFTP v3 semantics),
	// the target stays intact.
	out, err = g.SFTP(u, "put "+v2+" other.filepart\nrename -l other.filepart report.csv")
	if err == nil {
		t.Errorf("legacy rename over an existing file succeeded:\n%s", out)
	}
	cliCheck(t, c, bucket, home+"report.csv", sum3)
	cliCheck(t, c, bucket, home+"other.filepart", sum2)

	// Attributes after upload: put -p sends times and mode, then chmod;
	// accepted, content untouched. (chown/chgrp: OpenSSH first needs the
	// current owner, which objects lack, so it refuses on its own.)
	out, err = g.SFTP(u, strings.Join([]string{
		"put -p " + v1 + " timed.bin",
		"chmod 600 timed.bin",
		"ls -l timed.bin",
	}, "\n"))
	if err != nil {
		t.Fatalf("setstat after upload: %v\n%s", err, out)
	}
	cliCheck(t, c, bucket, home+"timed.bin", sum1)
	if n := len(g.Events.Find(audit.Event{Op: "setstat", Path: "/timed.bin", Result: "ok"})); n < 2 {
		t.Errorf("%d setstat events, want >= 2", n)
	}
	cliCheckAll(t, c, bucket)
}

// TestClientPsftp drives PuTTY's psftp (FileZilla's SFTP engine) with a
// .ppk key and a pinned host key fingerprint, then as HR with
// keyboard-interactive TOTP: without a terminal (setsid) PuTTY reads the
// prompt's answer from stdin, while commands come from the -b script.
func TestClientPsftp(t *testing.T) {
	needTool(t, "psftp")
	needTool(t, "puttygen")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	hr := g.AddUser("hr", true)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	fp := cliFingerprint(t, g)
	p, sum := randomFile(t, dir, "data.bin", 10<<20+1)
	back := filepath.Join(dir, "back.bin")
	script := cliScript(t, dir, "partner.txt",
		"mkdir in",
		"put "+p+" in/data.bin",
		"ls in",
		"mv in/data.bin in/moved.bin",
		"get in/moved.bin "+back,
		"put "+p+" in/tmp.bin",
		"del in/tmp.bin",
		"quit")
	run := cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir)}
	args := []string{"-batch", "-hostkey", fp, "-i", cliPPK(t, u, dir), "-P", fmt.Sprint(g.Port), "-b", script, u.Name + "@" + g.Host}
	out, err := run.run(t, "psftp", args...)
	if err != nil {
		t.Fatalf("psftp: %v\n%s", err, out)
	}
	mustContain(t, out, "data.bin")
	cliCheck(t, c, bucket, cliHome(u)+"in/moved.bin", sum)
	if got := fileSHA(t, back); got != sum {
		t.Errorf("psftp download sha %s, want %s", got, sum)
	}
	for _, gone := range []string{"in/data.bin", "in/tmp.bin"} {
		if exists(t, c, bucket, cliHome(u)+gone) {
			t.Errorf("%s still exists", gone)
		}
	}
	// reput (resume) fails cleanly; the object is unchanged.
	big, _ := randomFile(t, dir, "big.bin", 12<<20)
	out, err = run.run(t, "psftp", "-batch", "-hostkey", fp, "-i", cliPPK(t, u, dir), "-P", fmt.Sprint(g.Port),
		"-b", cliScript(t, dir, "reput.txt", "reput "+big+" in/moved.bin", "quit"), u.Name+"@"+g.Host)
	if err == nil {
		t.Errorf("psftp reput succeeded:\n%s", out)
	}
	cliCheck(t, c, bucket, cliHome(u)+"in/moved.bin", sum)
	// A wrong host key is refused before authentication.
	out, err = run.run(t, "psftp", "-batch", "-hostkey", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"-i", cliPPK(t, u, dir), "-P", fmt.Sprint(g.Port), "-b", script, u.Name+"@"+g.Host)
	if err == nil {
		t.Errorf("psftp accepted a wrong host key:\n%s", out)
	}

	// HR: key + TOTP. The code is the only line on stdin.
	hrBack := filepath.Join(dir, "hr.bin")
	hrScript := cliScript(t, dir, "hr.txt",
		"put "+p+" staff/hr.bin",
		"ls staff",
		"get staff/hr.bin "+hrBack,
		"mv staff/hr.bin staff/hr2.bin",
		"quit")
	hrRun := cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir), stdin: g.Code(hr) + "\n", setsid: true}
	out, err = hrRun.run(t, "psftp", "-hostkey", fp, "-i", cliPPK(t, hr, dir), "-P", fmt.Sprint(g.Port), "-b", hrScript, hr.Name+"@"+g.Host)
	if err != nil {
		t.Fatalf("psftp as hr: %v\n%s", err, out)
	}
	mustContain(t, out, "Verification code", "hr.bin")
	cliCheck(t, c, bucket, "user/staff/hr2.bin", sum)
	if got := fileSHA(t, hrBack); got != sum {
		t.Errorf("hr download sha %s, want %s", got, sum)
	}
	cliCheckAll(t, c, bucket)
}

// cliFingerprint is the host key's "SHA256:..." fingerprint.
func cliFingerprint(t *testing.T, g *testgw.Gateway) string {
	return cliFP(cliHostKey(t, g).Marshal())
}

func cliFP(wire []byte) string {
	h := sha256.Sum256(wire)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(h[:])
}

// cliPPK converts u's OpenSSH key to PuTTY's format.
func cliPPK(t *testing.T, u *testgw.User, dir string) string {
	t.Helper()
	out := filepath.Join(dir, u.Name+".ppk")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if b, err := exec.Command("puttygen", u.KeyPath, "-O", "private", "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("puttygen: %v\n%s", err, b)
	}
	return out
}

func cliScript(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cliSHA hashes b.
func cliSHA(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// cliKeys lists the bucket's keys below prefix, relative to it.
func cliKeys(t *testing.T, g *testgw.Gateway, prefix string) []string {
	c, bucket := s3Client(t, g, "files")
	var out []string
	for _, k := range allKeys(t, c, bucket) {
		if strings.HasPrefix(k, prefix) {
			out = append(out, strings.TrimPrefix(k, prefix))
		}
	}
	slices.Sort(out)
	return out
}

// TestClientSSHFS mounts the gateway with sshfs as HR (key + TOTP through
// SSH_ASKPASS) and uses it like a disk: ls, cp in and out, mv, rm, find,
// reads at random offsets and a 100 MiB cat. Writing into an existing file
// in place (dd conv=notrunc, >>, O_RDWR) fails with EOPNOTSUPP and leaves
// the object unchanged; a whole-file rewrite (cp over it, O_TRUNC) works.
func TestClientSSHFS(t *testing.T) {
	needTool(t, "sshfs")
	needTool(t, "fusermount3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv(testenv.EnvRequire) == "1" {
			t.Fatalf("no /dev/fuse: %v", err)
		}
		t.Skip("no /dev/fuse")
	}
	g := testgw.Start(t, testgw.Options{})
	hr := g.AddUser("hr", true)
	a := g.AddUser("applicant", false)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	cv, cvSum := randomFile(t, dir, "cv.pdf", 345678)
	if out, err := g.SFTP(a, "put "+cv+" cv.pdf"); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := strings.Join([]string{"IdentityFile=" + hr.KeyPath, "IdentitiesOnly=yes", "UserKnownHostsFile=" + g.KnownHosts,
		"StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null", "PasswordAuthentication=no", "ConnectTimeout=20"}, ",")
	run := cliRun{env: g.ClientEnv(hr, ""), timeout: time.Minute}
	if out, err := run.run(t, "sshfs", "-p", fmt.Sprint(g.Port), "-o", opts, hr.Name+"@"+g.Host+":/", mnt); err != nil {
		t.Fatalf("sshfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
			t.Logf("fusermount3 -u: %v %s; unmounting lazily", err, out)
			_ = exec.Command("fusermount3", "-uz", mnt).Run()
		}
	})
	sh := func(cmd string) (string, error) {
		return cliRun{dir: dir, timeout: 2 * time.Minute}.run(t, "sh", "-c", cmd)
	}
	must := func(cmd string) string {
		t.Helper()
		out, err := sh(cmd)
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return out
	}
	mine := "mnt/" + a.Name
	// sshfs sends CLOSE (our commit) from FUSE release, which the kernel
	// issues after close(2) has returned: cp can finish a moment before
	// the object exists. A failed commit is invisible to the program.
	settled := func() {
		t.Helper()
		waitFor(t, 30*time.Second, "sshfs uploads to be committed", func() bool { return g.Server.Uploads().Active() == 0 })
	}

	// ls and cp out (a download: HR may, from 127.0.0.0/8).
	mustContain(t, must("ls -l "+mine), "cv.pdf", "345678")
	must("cp " + mine + "/cv.pdf out.pdf")
	if got := fileSHA(t, filepath.Join(dir, "out.pdf")); got != cvSum {
		t.Errorf("cp out: sha %s, want %s", got, cvSum)
	}
	// mkdir, cp in (100 MiB, multipart), cat, random reads.
	big, bigSum := randomFile(t, dir, "big.bin", 100<<20)
	start := time.Now()
	must("mkdir mnt/staff && cp big.bin mnt/staff/big.bin")
	settled()
	t.Logf("sshfs: cp in of 100 MiB took %s (until committed)", time.Since(start))
	cliCheck(t, c, bucket, "user/staff/big.bin", bigSum)
	start = time.Now()
	if got := strings.Fields(must("cat mnt/staff/big.bin | sha256sum"))[0]; got != bigSum {
		t.Errorf("cat of 100 MiB: sha %s, want %s", got, bigSum)
	}
	t.Logf("sshfs: cat of 100 MiB took %s", time.Since(start))
	checkRandomReads(t, filepath.Join(mnt, "staff", "big.bin"), big, 64)

	// mv, rm, find.
	must("mv " + mine + "/cv.pdf " + mine + "/cv-reviewed.pdf")
	cliCheck(t, c, bucket, "user/"+a.Name+"/cv-reviewed.pdf", cvSum)
	if exists(t, c, bucket, "user/"+a.Name+"/cv.pdf") {
		t.Error("mv left the source")
	}
	must("cp out.pdf mnt/staff/tmp.pdf")
	settled()
	must("rm mnt/staff/tmp.pdf")
	if exists(t, c, bucket, "user/staff/tmp.pdf") {
		t.Error("rm left the object")
	}
	found := strings.Fields(must("cd mnt && find . -type f"))
	want := []string{"./" + a.Name + "/cv-reviewed.pdf", "./staff/big.bin"}
	slices.Sort(found)
	slices.Sort(want)
	if !slices.Equal(found, want) {
		t.Errorf("find: %q, want %q", found, want)
	}

	// In-place edits of an existing file: refused up front, nothing changes.
	target := mine + "/cv-reviewed.pdf"
	for _, cmd := range []string{
		"printf XYZ | dd of=" + target + " bs=1 seek=10 conv=notrunc",
		"printf XYZ | dd of=" + target + " conv=notrunc",
		"echo appended >> " + target,
	} {
		out, err := sh(cmd)
		if err == nil {
			t.Errorf("%s succeeded:\n%s", cmd, out)
		} else if !strings.Contains(out, "Operation not supported") {
			t.Errorf("%s: want 'Operation not supported', got:\n%s", cmd, out)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, target), os.O_RDWR, 0)
	if err == nil {
		f.Close()
		t.Error("O_RDWR open of an existing file succeeded")
	} else if !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("O_RDWR open: %v, want EOPNOTSUPP", err)
	}
	cliCheck(t, c, bucket, "user/"+a.Name+"/cv-reviewed.pdf", cvSum)
	// A whole-file rewrite is an ordinary overwrite.
	small, smallSum := randomFile(t, dir, "small", 1234)
	must("cp " + small + " " + target)
	settled()
	cliCheck(t, c, bucket, "user/"+a.Name+"/cv-reviewed.pdf", smallSum)
	cliCheckAll(t, c, bucket)
}

// checkRandomReads compares n reads at random offsets of the mounted file
// with the local original.
func checkRandomReads(t *testing.T, mounted, local string, n int) {
	t.Helper()
	mf, err := os.Open(mounted)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	lf, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	fi, err := lf.Stat()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		size := 1 + rng.IntN(300<<10)
		off := rng.Int64N(fi.Size() - int64(size))
		if i == 0 {
			off = fi.Size() - int64(size) // the very end
		}
		got, want := make([]byte, size), make([]byte, size)
		if _, err := mf.ReadAt(got, off); err != nil {
			t.Fatalf("read %d at %d: %v", size, off, err)
		}
		if _, err := lf.ReadAt(want, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %d at %d: content differs", size, off)
		}
	}
}

// TestClientLftp drives lftp over OpenSSH (sftp:connect-program) as a
// partner: put, ls, mv, get, rm, mirror -R of a tree and back. Its resume
// (put -c) fails cleanly instead of corrupting the file.
func TestClientLftp(t *testing.T) {
	needTool(t, "lftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := cliHome(u)
	dir := t.TempDir()
	sums := cliTree(t, filepath.Join(dir, "tree"), cliTreeFiles)
	p, sum := randomFile(t, dir, "data.bin", 9<<20+5)
	connect := "ssh -a -x " + strings.Join(g.SSHArgs(u), " ")
	lftp := func(cmds ...string) (string, error) {
		script := append([]string{
			"set sftp:connect-program '" + connect + "'",
			"set cmd:fail-exit yes",
			"set net:max-retries 2",
			"set net:reconnect-interval-base 1",
			fmt.Sprintf("open -u %s, -p %d sftp://%s", u.Name, g.Port, g.Host),
		}, cmds...)
		return cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir), timeout: 2 * time.Minute}.run(t, "lftp", "-c", strings.Join(script, "; "))
	}
	out, err := lftp(
		"put data.bin -o in.bin",
		"cls -l in.bin",
		"mv in.bin data.bin",
		"get data.bin -o back.bin",
		"put data.bin -o gone.bin",
		"rm gone.bin",
		"mirror -R tree tree",
		"mirror tree tree.back",
		"find tree",
	)
	if err != nil {
		t.Fatalf("lftp: %v\n%s", err, out)
	}
	mustContain(t, out, fmt.Sprint(9<<20+5), "tree/sub/deep/c.bin")
	cliCheck(t, c, bucket, home+"data.bin", sum)
	if got := fileSHA(t, filepath.Join(dir, "back.bin")); got != sum {
		t.Errorf("lftp get: sha %s, want %s", got, sum)
	}
	for rel, s := range sums {
		cliCheck(t, c, bucket, home+"tree/"+rel, s)
		if got := fileSHA(t, filepath.Join(dir, "tree.back", rel)); got != s {
			t.Errorf("mirror back %s: sha %s, want %s", rel, got, s)
		}
	}
	for _, gone := range []string{"in.bin", "gone.bin"} {
		if exists(t, c, bucket, home+gone) {
			t.Errorf("%s still exists", gone)
		}
	}
	// Resume upload onto the shorter object: refused, object unchanged.
	head := filepath.Join(dir, "head.bin")
	cliCopyPrefix(t, p, head, 3<<20)
	if out, err := lftp("put head.bin -o res.bin"); err != nil {
		t.Fatalf("lftp: %v\n%s", err, out)
	}
	out, err = lftp("put -c data.bin -o res.bin")
	if err == nil {
		t.Errorf("lftp put -c succeeded:\n%s", out)
	}
	cliCheck(t, c, bucket, home+"res.bin", fileSHA(t, head))
	cliCheckAll(t, c, bucket)
}

// rcloneEnv configures an rclone sftp remote "gw" for u through the
// environment: rclone's own SSH library, key file and known_hosts.
func rcloneEnv(g *testgw.Gateway, u *testgw.User, dir string) []string {
	return append(os.Environ(), "HOME="+dir, "RCLONE_CONFIG="+filepath.Join(dir, "rclone.conf"),
		"RCLONE_CONFIG_GW_TYPE=sftp", "RCLONE_CONFIG_GW_HOST="+g.Host, fmt.Sprintf("RCLONE_CONFIG_GW_PORT=%d", g.Port),
		"RCLONE_CONFIG_GW_USER="+u.Name, "RCLONE_CONFIG_GW_KEY_FILE="+u.KeyPath,
		"RCLONE_CONFIG_GW_KNOWN_HOSTS_FILE="+g.KnownHosts)
}

// TestClientRclone runs rclone copy and check against the gateway. rclone
// tries md5sum/sha1sum over exec first; the gateway refuses exec, rclone
// notices and carries on without remote hashes (no flag needed), and
// check --download compares content instead. Files keep the times rclone
// sets, so a second copy transfers nothing (no --size-only needed) and
// lsl shows the source's times.
func TestClientRclone(t *testing.T) {
	needTool(t, "rclone")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := cliHome(u)
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	sums := cliTree(t, src, cliTreeFiles)
	// Source times in the past, with a fraction (SFTP keeps whole seconds,
	// which is rclone's precision for an sftp remote).
	mtimes := map[string]time.Time{}
	for i, rel := range slices.Sorted(maps.Keys(sums)) {
		mtimes[rel] = time.Date(2024, 3, 1+i, 10, 11, 12, 345678901, time.Local)
		if err := os.Chtimes(filepath.Join(src, rel), mtimes[rel], mtimes[rel]); err != nil {
			t.Fatal(err)
		}
	}
	run := cliRun{dir: dir, env: rcloneEnv(g, u, dir), timeout: 2 * time.Minute}
	rc := func(args ...string) string {
		t.Helper()
		out, err := run.run(t, "rclone", append([]string{"--retries", "1", "--low-level-retries", "2"}, args...)...)
		if err != nil {
			t.Fatalf("rclone %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	uploads := func() int { // first uploads and replacements alike
		return len(g.Events.Find(audit.Event{Kind: "file", User: u.Name, Op: "upload"})) +
			len(g.Events.Find(audit.Event{Kind: "file", User: u.Name, Op: "overwrite"}))
	}
	rc("copy", src, "gw:sync")
	out := rc("check", "--download", src, "gw:sync")
	mustContain(t, out, "0 differences found")
	mustContain(t, rc("check", src, "gw:sync"), "0 differences found")
	for rel, s := range sums {
		cliCheck(t, c, bucket, home+"sync/"+rel, s)
		wantObjectTime(t, c, bucket, home+"sync/"+rel, mtimes[rel])
	}
	before := uploads()
	rc("copy", src, "gw:sync")
	if n := uploads() - before; n != 0 {
		t.Errorf("a second rclone copy of an unchanged tree uploaded %d files", n)
	}
	lsl := rc("lsl", "gw:sync")
	for rel := range sums {
		mustContain(t, lsl, mtimes[rel].Format("2006-01-02 15:04:05")+".000000000 "+rel)
	}
	rc("moveto", "gw:sync/a.txt", "gw:sync/moved.txt")
	rc("deletefile", "gw:sync/sub/b.bin")
	rc("copy", "gw:sync", filepath.Join(dir, "back"))
	if got := fileSHA(t, filepath.Join(dir, "back", "moved.txt")); got != sums["a.txt"] {
		t.Errorf("rclone download: sha %s, want %s", got, sums["a.txt"])
	}
	if got := fileSHA(t, filepath.Join(dir, "back", "sub/deep/c.bin")); got != sums["sub/deep/c.bin"] {
		t.Errorf("rclone download: sha %s, want %s", got, sums["sub/deep/c.bin"])
	}
	cliCheck(t, c, bucket, home+"sync/moved.txt", sums["a.txt"])
	for _, gone := range []string{"sync/a.txt", "sync/sub/b.bin"} {
		if exists(t, c, bucket, home+gone) {
			t.Errorf("%s still exists", gone)
		}
	}
	if len(g.Events.Find(audit.Event{Op: "ssh_request", Result: "denied"})) == 0 {
		t.Log("rclone did not try exec (hash commands) this time")
	}
	cliCheckAll(t, c, bucket)
}

// curlCompat lets curl 7.88 (libssh2 1.10, Debian 12) in: it knows no
// encrypt-then-MAC MAC and no AEAD cipher, so it needs hmac-sha2-256 with
// AES-CTR. The default gateway does not offer that (see COMPATIBILITY.md).
func curlCompat(c *gateway.Config) {
	a := gateway.DefaultAlgorithms()
	a.MACs = append(a.MACs, ssh.HMACSHA256, ssh.HMACSHA512)
	c.Algorithms = &a
}

// TestClientCurl uploads (-T), lists, renames and deletes (-Q) and
// downloads with curl's sftp:// as a partner, with the host key pinned
// by --hostpubsha256.
func TestClientCurl(t *testing.T) {
	needTool(t, "curl")
	dir := t.TempDir()
	// With the default algorithms libssh2 1.10 cannot agree on a MAC.
	def := testgw.Start(t, testgw.Options{})
	du := def.AddUser("partner", false)
	defOut, defErr := curlRun(t, def, du, dir, "sftp://"+def.Host+":"+fmt.Sprint(def.Port)+"/")
	t.Logf("curl against the default algorithms: err=%v %s", defErr, strings.TrimSpace(defOut))

	g := testgw.Start(t, testgw.Options{Tweak: curlCompat})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := cliHome(u)
	base := fmt.Sprintf("sftp://%s:%d/", g.Host, g.Port)
	p, sum := randomFile(t, dir, "up.bin", 9<<20+1)
	must := func(args ...string) string {
		t.Helper()
		out, err := curlRun(t, g, u, dir, args...)
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	must("-T", p, base+"up.bin")
	cliCheck(t, c, bucket, home+"up.bin", sum)
	mustContain(t, must(base), "up.bin", fmt.Sprint(9<<20+1))
	must("-Q", "rename /up.bin /renamed.bin", base)
	must("-o", filepath.Join(dir, "back.bin"), base+"renamed.bin")
	if got := fileSHA(t, filepath.Join(dir, "back.bin")); got != sum {
		t.Errorf("curl download: sha %s, want %s", got, sum)
	}
	cliCheck(t, c, bucket, home+"renamed.bin", sum)
	must("-Q", "rm /renamed.bin", base)
	if exists(t, c, bucket, home+"renamed.bin") || exists(t, c, bucket, home+"up.bin") {
		t.Error("objects left after rename and rm")
	}
	// A wrong pinned host key is refused before login.
	if out, err := curlRunPin(t, g, u, dir, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", base); err == nil {
		t.Errorf("curl accepted a wrong host key:\n%s", out)
	}
	cliCheckAll(t, c, bucket)
}

func curlRun(t *testing.T, g *testgw.Gateway, u *testgw.User, dir string, args ...string) (string, error) {
	h := sha256.Sum256(cliHostKey(t, g).Marshal())
	return curlRunPin(t, g, u, dir, base64.StdEncoding.EncodeToString(h[:]), args...)
}

func curlRunPin(t *testing.T, g *testgw.Gateway, u *testgw.User, dir, pin string, args ...string) (string, error) {
	pub := u.KeyPath + ".pub"
	if _, err := os.Stat(pub); err != nil {
		if err := os.WriteFile(pub, ssh.MarshalAuthorizedKey(u.Signer.PublicKey()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{"-sS", "--fail", "--max-time", "120", "--user", u.Name + ":", "--key", u.KeyPath, "--pubkey", pub, "--hostpubsha256", pin}
	return cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir), timeout: 3 * time.Minute}.run(t, "curl", append(base, args...)...)
}

// TestClientParamiko runs e2e/paramiko_client.py (how partners automate):
// put, putfo from a pipe, stat after put, listdir, rename, get, remove.
func TestClientParamiko(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import paramiko").Run(); err != nil {
		if os.Getenv(testenv.EnvRequire) == "1" {
			t.Fatalf("%s cannot import paramiko: %v", py, err)
		}
		t.Skip("no paramiko for " + py)
	}
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := cliHome(u)
	dir := t.TempDir()
	local, localSum := randomFile(t, dir, "local.bin", 9<<20+7)
	stream, streamSum := randomFile(t, dir, "stream.src", 3<<20+11)
	script, err := filepath.Abs("paramiko_client.py")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir)}.run(t, py, script,
		g.Host, fmt.Sprint(g.Port), u.Name, u.KeyPath, g.KnownHosts, local, stream, dir)
	if err != nil {
		t.Fatalf("paramiko: %v\n%s", err, out)
	}
	var rep struct {
		PutSize            int64    `json:"put_size"`
		StatSize           int64    `json:"stat_size"`
		PutfoSize          int64    `json:"putfo_size"`
		StreamStatSize     int64    `json:"stream_stat_size"`
		Listdir            []string `json:"listdir"`
		ListdirAfterRename []string `json:"listdir_after_rename"`
		ListdirAfterRemove []string `json:"listdir_after_remove"`
		Middle             string   `json:"middle"`
		Removed            bool     `json:"removed"`
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if rep.PutSize != 9<<20+7 || rep.StatSize != 9<<20+7 || rep.PutfoSize != 3<<20+11 || rep.StreamStatSize != 3<<20+11 {
		t.Errorf("sizes after put/putfo: %+v", rep)
	}
	if !slices.Equal(rep.Listdir, []string{"put.bin", "stream.bin"}) ||
		!slices.Equal(rep.ListdirAfterRename, []string{"renamed.bin", "stream.bin"}) ||
		!slices.Equal(rep.ListdirAfterRemove, []string{"renamed.bin"}) || !rep.Removed {
		t.Errorf("listings: %+v", rep)
	}
	srcBytes, err := os.ReadFile(stream)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(srcBytes[12345 : 12345+16]); rep.Middle != want {
		t.Errorf("seek+read: %s, want %s", rep.Middle, want)
	}
	cliCheck(t, c, bucket, home+"pm/renamed.bin", localSum)
	if got := fileSHA(t, filepath.Join(dir, "renamed.bin")); got != localSum {
		t.Errorf("get renamed.bin: sha %s, want %s", got, localSum)
	}
	if got := fileSHA(t, filepath.Join(dir, "stream.bin")); got != streamSum {
		t.Errorf("get stream.bin: sha %s, want %s", got, streamSum)
	}
	if exists(t, c, bucket, home+"pm/stream.bin") {
		t.Error("remove left the object")
	}
	assertSSE(t, c, bucket, home+"pm/")
	cliCheckAll(t, c, bucket)
}
