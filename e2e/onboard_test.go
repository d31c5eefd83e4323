package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/onboard"
	"github.com/sftpgw/sftpgw/vfs"
)

// onbLimits are the applicant limits these tests run with: small enough
// for fast tests, the size limit above one S3 part (8 MiB) so a refused
// upload has a multipart upload to abort.
var onbLimits = vfs.Limits{MaxFileSize: 12 << 20, QuotaBytes: 30 << 20, QuotaFiles: 4,
	AllowedTypes: []string{"pdf", "jpeg", "png", "docx", "odt", "txt"}}

func onbRoles() map[string]*authn.Role {
	roles := testgw.StandardRoles()
	a := *roles["applicant"]
	a.Limits = onbLimits
	roles["applicant"] = &a
	return roles
}

// onbBundle is an invitation as the applicant receives it.
type onbBundle struct {
	Name, Dir string
}

func (b onbBundle) path(f string) string { return filepath.Join(b.Dir, f) }

// onbInvite does what "sftpgw user invite" does against g's users file and
// host key, then has the gateway reload its users.
func onbInvite(t *testing.T, g *testgw.Gateway, expires time.Time) onbBundle {
	t.Helper()
	data, err := os.ReadFile(g.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	_, _, hk, _, _, err := ssh.ParseKnownHosts(data)
	if err != nil {
		t.Fatal(err)
	}
	u, files, err := onboard.Invite(onboard.InviteOptions{UsersFile: filepath.Join(g.Dir, "users.hcl"), Role: "applicant",
		ExpiresAt: expires, Bundle: onboard.Options{Host: g.Host, Port: g.Port, HostKeys: []ssh.PublicKey{hk}, Limits: onbLimits}})
	if err != nil {
		t.Fatal(err)
	}
	b := onbBundle{Name: u.Name, Dir: filepath.Join(t.TempDir(), "invite-"+u.Name)}
	if err := onboard.WriteDir(b.Dir, files); err != nil {
		t.Fatal(err)
	}
	if err := g.Users.Reload(); err != nil {
		t.Fatal(err)
	}
	return b
}

// onbSFTP runs OpenSSH sftp exactly as the bundle's README says, in batch
// mode; knownHosts "" means the bundle's own file.
func onbSFTP(t *testing.T, g *testgw.Gateway, b onbBundle, knownHosts, batch string) (string, error) {
	t.Helper()
	if knownHosts == "" {
		knownHosts = b.path("known_hosts")
	}
	args := []string{"-i", b.path("key"), "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=20", "-F", "/dev/null", "-P", fmt.Sprint(g.Port), "-b", "-", b.Name + "@" + g.Host}
	return onbRun(t, batch, b.Dir, nil, "sftp", args...)
}

// onbPsftp runs PuTTY's psftp with the bundle's .ppk, trusting only the
// fingerprint printed on the bundle's README. keepGoing: -be, go on after
// an error (psftp then exits 0).
func onbPsftp(t *testing.T, g *testgw.Gateway, b onbBundle, keepGoing bool, lines ...string) (string, error) {
	t.Helper()
	fp := onbReadmeFingerprint(t, b)
	script := filepath.Join(b.Dir, "..", "psftp-script")
	if err := os.WriteFile(script, []byte(strings.Join(append(lines, "quit"), "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir() // psftp keeps no state in the real home
	args := []string{"-batch", "-hostkey", fp, "-i", b.path("key.ppk"), "-P", fmt.Sprint(g.Port), "-b", script, b.Name + "@" + g.Host}
	if keepGoing {
		args = append([]string{"-be"}, args...)
	}
	return onbRun(t, "", b.Dir, []string{"HOME=" + home}, "psftp", args...)
}

func onbRun(t *testing.T, stdin, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "DISPLAY=", "SSH_AUTH_SOCK="), env...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

var fpRE = regexp.MustCompile(`SHA256:[A-Za-z0-9+/]{43}`)

func onbReadmeFingerprint(t *testing.T, b onbBundle) string {
	t.Helper()
	readme, err := os.ReadFile(b.path("README.txt"))
	if err != nil {
		t.Fatal(err)
	}
	fp := fpRE.FindString(string(readme))
	if fp == "" {
		t.Fatalf("no fingerprint in README:\n%s", readme)
	}
	return fp
}

// onbFile writes a file that starts with head and is filled up to n bytes
// with random data.
func onbFile(t *testing.T, dir, name string, head []byte, n int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, n-int64(len(head))); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	pdfHead  = []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	jpegHead = []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0}
)

// TestInviteBundleWorks: the bundle, as handed over, is all an applicant
// needs with OpenSSH sftp, PuTTY psftp and FileZilla.
func TestInviteBundleWorks(t *testing.T) {
	needTool(t, "sftp")
	needTool(t, "psftp")
	g := testgw.Start(t, testgw.Options{Roles: onbRoles()})
	b := onbInvite(t, g, time.Now().Add(14*24*time.Hour))
	c, bucket := s3Client(t, g, "files")
	home := "user/" + b.Name + "/"
	src := t.TempDir()
	cv := onbFile(t, src, "cv.pdf", pdfHead, 200<<10)

	out, err := onbSFTP(t, g, b, "", "put "+cv+" cv.pdf\nls -l\n")
	if err != nil {
		t.Fatalf("sftp with the bundle: %v\n%s", err, out)
	}
	mustContain(t, out, "cv.pdf", "204800")
	if got := objectSHA(t, c, bucket, home+"cv.pdf"); got != fileSHA(t, cv) {
		t.Error("uploaded content differs")
	}
	assertSSE(t, c, bucket, home+"cv.pdf")
	// The known_hosts file is what lets sftp in: without it, strict host
	// key checking refuses the server.
	empty := filepath.Join(src, "empty_known_hosts")
	os.WriteFile(empty, nil, 0o600)
	if out, err := onbSFTP(t, g, b, empty, "ls\n"); err == nil || !strings.Contains(out, "Host key verification failed") {
		t.Errorf("sftp without the bundle's known_hosts: err=%v\n%s", err, out)
	}

	photo := onbFile(t, src, "photo.jpg", jpegHead, 300<<10)
	out, err = onbPsftp(t, g, b, false, "put "+photo+" photo.jpg", "ls")
	if err != nil {
		t.Fatalf("psftp with the bundle's key.ppk: %v\n%s", err, out)
	}
	mustContain(t, out, "photo.jpg")
	if got := objectSHA(t, c, bucket, home+"photo.jpg"); got != fileSHA(t, photo) {
		t.Error("psftp upload differs")
	}

	// FileZilla: the site definition names this server, account and key.
	raw, err := os.ReadFile(b.path("filezilla-site.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var fz struct {
		XMLName xml.Name `xml:"FileZilla3"`
		Servers []struct {
			Host, User, Keyfile, Name       string
			Port, Protocol, Type, Logontype int
		} `xml:"Servers>Server"`
	}
	if err := xml.Unmarshal(raw, &fz); err != nil {
		t.Fatalf("FileZilla XML: %v\n%s", err, raw)
	}
	if len(fz.Servers) != 1 {
		t.Fatalf("FileZilla XML has %d servers", len(fz.Servers))
	}
	s := fz.Servers[0]
	if s.Host != g.Host || s.Port != g.Port || s.User != b.Name || s.Protocol != 1 || s.Type != 0 || s.Logontype != 5 {
		t.Errorf("FileZilla site %+v", s)
	}
	if _, err := os.Stat(b.path(s.Keyfile)); err != nil || s.Keyfile != "key.ppk" {
		t.Errorf("FileZilla key file %q is not the bundle's key.ppk: %v", s.Keyfile, err)
	}
	kh, _ := os.ReadFile(g.KnownHosts)
	_, _, hk, _, _, err := ssh.ParseKnownHosts(kh)
	if err != nil {
		t.Fatal(err)
	}
	if onbReadmeFingerprint(t, b) != ssh.FingerprintSHA256(hk) {
		t.Error("README fingerprint is not the gateway's")
	}
}

// TestInvitedApplicantExpires: access ends at the expiry in the users file.
func TestInvitedApplicantExpires(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Roles: onbRoles()})
	b := onbInvite(t, g, time.Now().Add(time.Hour))
	if out, err := onbSFTP(t, g, b, "", "ls\n"); err != nil {
		t.Fatalf("before expiry: %v\n%s", err, out)
	}
	err := authn.UpdateUsers(filepath.Join(g.Dir, "users.hcl"), false, func(set *authn.UserSet) error {
		u, _ := set.Lookup(b.Name)
		c := *u
		c.ExpiresAt = time.Now().Add(-time.Minute)
		return set.Replace(&c)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Users.Reload(); err != nil {
		t.Fatal(err)
	}
	out, err := onbSFTP(t, g, b, "", "ls\n")
	if err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("expired applicant: err=%v\n%s", err, out)
	}
	if len(g.Events.Find(audit.Event{Kind: "auth", User: b.Name, Result: "failure", ErrClass: "expired"})) == 0 {
		t.Errorf("no audited refusal for the expired account: %+v", g.Events.All())
	}
}

// onbAssertNothingLeft checks that refused uploads left no object and no
// pending multipart upload.
func onbAssertNothingLeft(t *testing.T, g *testgw.Gateway, keys ...string) {
	t.Helper()
	c, bucket := s3Client(t, g, "files")
	for _, k := range keys {
		if exists(t, c, bucket, k) {
			t.Errorf("refused upload left object %s", k)
		}
	}
	waitFor(t, 10*time.Second, "uploads to finish", func() bool { return g.Server.Uploads().Active() == 0 })
	if n := len(testenv.PendingUploads(t, c, bucket, "")); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
}

// TestUploadLimitsClients: a file that is too large, of a refused type or
// over the quota fails with the reason visible to the client, and leaves
// nothing behind. Each client's output is logged for the documentation.
func TestUploadLimitsClients(t *testing.T) {
	needTool(t, "sftp")
	needTool(t, "psftp")
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		needTool(t, "/usr/bin/python3")
	}
	g := testgw.Start(t, testgw.Options{Roles: onbRoles()})
	src := t.TempDir()
	big := onbFile(t, src, "big.pdf", pdfHead, 13<<20) // over the 12 MiB limit, past the first 8 MiB part
	elf, err := os.ReadFile("/bin/true")
	if err != nil || !bytes.HasPrefix(elf, []byte("\x7fELF")) {
		t.Fatalf("/bin/true is not an ELF binary: %v", err)
	}
	fake := filepath.Join(src, "fake.pdf")
	os.WriteFile(fake, elf, 0o644)
	// paramiko pipelines writes and only looks at their replies once
	// about 100 are in flight; it ignores errors on close. A disguised
	// binary of a few MiB is refused with the message, a small one only
	// by put()'s check afterwards ("file does not exist").
	fakeBig := filepath.Join(src, "fakebig.pdf")
	os.WriteFile(fakeBig, append(elf, make([]byte, 6<<20)...), 0o644)
	exe := filepath.Join(src, "setup.exe")
	os.WriteFile(exe, elf, 0o644)

	a := onbInvite(t, g, time.Now().Add(time.Hour))
	home := "user/" + a.Name + "/"
	msgs := map[string]string{
		"big.pdf":   "big.pdf is larger than the limit of 12 MiB per file",
		"fake.pdf":  "the content of fake.pdf is not a PDF document",
		"setup.exe": ".exe files are not accepted",
	}
	// OpenSSH sftp, one batch per file (a batch stops at the first error).
	// Its own line says only "Failure"; the reason arrives on stderr.
	for _, f := range []string{big, fake, exe} {
		name := filepath.Base(f)
		out, err := onbSFTP(t, g, a, "", "put "+f+" "+name+"\n")
		t.Logf("OpenSSH sftp, put %s:\n%s", name, out)
		if err == nil {
			t.Errorf("sftp put %s succeeded", name)
		}
		mustContain(t, out, "Failure", "sftpgw: upload refused: "+msgs[name])
	}
	onbAssertNothingLeft(t, g, home+"big.pdf", home+"fake.pdf", home+"setup.exe")

	// psftp, too, prints only "failure" itself and the reason from stderr.
	out, err := onbPsftp(t, g, a, true, "put "+big+" big.pdf", "put "+fake+" fake.pdf", "put "+exe+" setup.exe")
	t.Logf("psftp:\n%s", out)
	if err != nil {
		t.Errorf("psftp -be: %v", err)
	}
	mustContain(t, out, "error while writing: failure", "open for write: failure")
	for _, m := range msgs {
		mustContain(t, out, "sftpgw: upload refused: "+m)
	}
	onbAssertNothingLeft(t, g, home+"big.pdf", home+"fake.pdf", home+"setup.exe")

	// paramiko raises the server's message.
	wd, _ := os.Getwd()
	pm, err := onbRun(t, "", src, nil, "/usr/bin/python3", filepath.Join(wd, "onboard_paramiko.py"), g.Host, fmt.Sprint(g.Port),
		a.Name, a.path("key"), a.path("known_hosts"), big+"=big.pdf", fakeBig+"=fake.pdf", exe+"=setup.exe", fake+"=small.pdf")
	if err != nil {
		t.Fatalf("paramiko: %v\n%s", err, pm)
	}
	t.Logf("paramiko: %s", pm)
	var report map[string]string
	if err := json.Unmarshal([]byte(pm), &report); err != nil {
		t.Fatalf("paramiko report: %v\n%s", err, pm)
	}
	for name, m := range msgs {
		if !strings.HasPrefix(report[name], "error:") || !strings.Contains(report[name], m) {
			t.Errorf("paramiko %s: %q, want the message %q", name, report[name], m)
		}
	}
	if !strings.HasPrefix(report["small.pdf"], "error:") {
		t.Errorf("paramiko small disguised binary: %q", report["small.pdf"])
	}
	onbAssertNothingLeft(t, g, home+"big.pdf", home+"fake.pdf", home+"setup.exe", home+"small.pdf")

	// Every refusal is audited as an upload failing on a limit.
	if n := len(g.Events.Find(audit.Event{Kind: "file", User: a.Name, Op: "upload", Result: "error", ErrClass: "limit"})); n != 10 {
		t.Errorf("%d limit events for 10 refused uploads", n)
	}
}

// TestQuotaClients: the number of files and the bytes under the home are
// capped, deletes free room, and a restarted gateway counts from the bucket.
func TestQuotaClients(t *testing.T) {
	needTool(t, "sftp")
	needTool(t, "psftp")
	g := testgw.Start(t, testgw.Options{Roles: onbRoles()})
	src := t.TempDir()

	// Files: 4 allowed.
	a := onbInvite(t, g, time.Now().Add(time.Hour))
	var batch strings.Builder
	for i := 1; i <= 4; i++ {
		p := onbFile(t, src, fmt.Sprintf("doc%d.pdf", i), pdfHead, 1000)
		fmt.Fprintf(&batch, "put %s\n", p)
	}
	if out, err := onbSFTP(t, g, a, "", batch.String()); err != nil {
		t.Fatalf("4 files: %v\n%s", err, out)
	}
	fifth := onbFile(t, src, "doc5.pdf", pdfHead, 1000)
	out, err := onbPsftp(t, g, a, false, "put "+fifth)
	t.Logf("psftp, 5th file:\n%s", out)
	if err == nil {
		t.Error("5th file accepted")
	}
	mustContain(t, out, "you have reached the limit of 4 files")
	onbAssertNothingLeft(t, g, "user/"+a.Name+"/doc5.pdf")
	if out, err := onbSFTP(t, g, a, "", "rm doc1.pdf\nput "+fifth+"\n"); err != nil {
		t.Fatalf("after a delete: %v\n%s", err, out)
	}

	// Bytes: 30 MiB in total.
	b := onbInvite(t, g, time.Now().Add(time.Hour))
	ten1 := onbFile(t, src, "a.pdf", pdfHead, 10<<20)
	ten2 := onbFile(t, src, "b.pdf", pdfHead, 10<<20)
	eleven := onbFile(t, src, "c.pdf", pdfHead, 11<<20)
	if out, err := onbSFTP(t, g, b, "", "put "+ten1+"\nput "+ten2+"\n"); err != nil {
		t.Fatalf("20 MiB: %v\n%s", err, out)
	}
	out, err = onbSFTP(t, g, b, "", "put "+eleven+"\n")
	t.Logf("OpenSSH sftp, over the byte quota:\n%s", out)
	if err == nil {
		t.Fatal("upload over the quota accepted")
	}
	mustContain(t, out, "your storage quota of 30 MiB would be exceeded (20 MiB already stored)")
	onbAssertNothingLeft(t, g, "user/"+b.Name+"/c.pdf")
	if out, err := onbSFTP(t, g, b, "", "rm a.pdf\nput "+eleven+"\n"); err != nil {
		t.Fatalf("after a delete: %v\n%s", err, out)
	}

	// A restarted gateway (same bucket, same users) derives the usage
	// from the bucket: 21 MiB stored, so 10 MiB more do not fit.
	g2 := testgw.Start(t, testgw.Options{Roles: onbRoles(), Stores: g.Stores})
	g2.S3 = g.S3
	users, err := os.ReadFile(filepath.Join(g.Dir, "users.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g2.Dir, "users.hcl"), users, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g2.Users.Reload(); err != nil {
		t.Fatal(err)
	}
	// The bundle's known_hosts names the first gateway's key: trust g2's.
	if out, err := onbSFTP(t, g2, b, g2.KnownHosts, "put "+ten1+" d.pdf\n"); err == nil {
		t.Fatalf("after restart, over quota accepted:\n%s", out)
	} else {
		mustContain(t, out, "(21 MiB already stored)")
	}
	nine := onbFile(t, src, "e.pdf", pdfHead, 9<<20)
	if out, err := onbSFTP(t, g2, b, g2.KnownHosts, "put "+nine+"\n"); err != nil {
		t.Fatalf("after restart, up to the quota: %v\n%s", err, out)
	}
	onbAssertNothingLeft(t, g2, "user/"+b.Name+"/d.pdf")
}
