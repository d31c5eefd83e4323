package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// resumePartSize keeps the resume tests small: 40 MiB are 8 parts.
const resumePartSize = 5 << 20

// resumeGateway is a test gateway with resume_window on and 5 MiB parts.
func resumeGateway(t *testing.T) *testgw.Gateway {
	stores := map[string]vfs.Store{}
	s3cfg := map[string]s3store.Config{}
	for _, name := range []string{"files", "logs"} {
		cfg := testenv.S3(t)
		cfg.PartSize = resumePartSize
		st, err := s3store.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		stores[name], s3cfg[name] = st, cfg
	}
	g := testgw.Start(t, testgw.Options{Stores: stores, Tweak: func(c *gateway.Config) { c.ResumeWindow = time.Hour }})
	g.S3 = s3cfg
	return g
}

// pendingParts is the number of parts of key's multipart uploads in the bucket.
func pendingParts(t *testing.T, c *s3.Client, bucket, key string) int {
	t.Helper()
	ctx := context.Background()
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &key})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range ups.Uploads {
		ps, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: &bucket, Key: u.Key, UploadId: u.UploadId})
		if err != nil {
			continue // completed or aborted meanwhile
		}
		n += len(ps.Parts)
	}
	return n
}

// killedPut starts cmd (an upload of a 40 MiB file through a rate-limited
// client), SIGKILLs it once parts reach wantParts, and waits for the
// gateway to keep the interrupted upload (its manifest appears).
func killedPut(t *testing.T, g *testgw.Gateway, cmd *exec.Cmd, key string, wantParts int) {
	t.Helper()
	c, bucket := s3Client(t, g, "files")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d parts stored", wantParts), func() bool {
		select {
		case err := <-done:
			t.Fatalf("the client finished before it was killed: %v", err)
		default:
		}
		return pendingParts(t, c, bucket, key) >= wantParts
	})
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	// The session's end reaches the gateway: the upload is kept, not live.
	waitFor(t, 60*time.Second, "the interrupted upload to end", func() bool { return g.Server.Uploads().Active() == 0 })
	waitFor(t, 60*time.Second, "the resume manifest", func() bool {
		out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(vfs.ResumePrefix)})
		return err == nil && len(out.Contents) > 0
	})
	if exists(t, c, bucket, key) {
		t.Fatal("the interrupted upload is visible as an object")
	}
}

// resumedAt returns the offset of the one upload_resumed event of path,
// and the bytes the gateway had received before the interruption.
func resumedAt(t *testing.T, g *testgw.Gateway, path string) (offset, received int64) {
	t.Helper()
	rs := g.Events.Find(audit.Event{Op: "upload_resumed", Path: path})
	if len(rs) != 1 {
		t.Fatalf("upload_resumed events for %s: %+v, want 1", path, rs)
	}
	for _, e := range g.Events.Find(audit.Event{Op: "upload", Path: path}) {
		if strings.Contains(e.Detail, "kept for resume") {
			received = e.Bytes
		}
	}
	return rs[0].Bytes, received
}

func sftpCmd(g *testgw.Gateway, u *testgw.User, batch string, extra ...string) *exec.Cmd {
	args := append(g.SSHArgs(u), "-P", fmt.Sprint(g.Port))
	args = append(args, extra...)
	args = append(args, "-b", "-", u.Name+"@"+g.Host)
	cmd := exec.Command("sftp", args...)
	cmd.Env = g.ClientEnv(u, "")
	cmd.Stdin = strings.NewReader(batch)
	cmd.Dir = g.Dir
	return cmd
}

// TestResumeOpenSSHReput: OpenSSH sftp put killed at about 60 %, then
// reput finishes from the kept parts; the object equals the source and is
// encrypted, never visible before; others never see the pending file.
func TestResumeOpenSSHReput(t *testing.T) {
	needTool(t, "sftp")
	g := resumeGateway(t)
	u := g.AddUser("applicant", false)
	other := g.AddUser("applicant", false)
	hr := g.AddUser("hr", true)
	c, bucket := s3Client(t, g, "files")
	key := cliHome(u) + "scan.bin"
	big, sum := randomFile(t, t.TempDir(), "scan.bin", 8*resumePartSize)
	// 80 Mbit/s: 40 MiB take about 4 s, room to kill it at 5 of 8 parts.
	killedPut(t, g, sftpCmd(g, u, "put "+big+" scan.bin", "-l", "81920"), key, 5)

	out, err := g.SFTP(u, "ls -l scan.bin")
	if err != nil {
		t.Fatalf("owner's ls of the pending file: %v\n%s", err, out)
	}
	if out, err := g.SFTP(other, "ls -l /scan.bin"); err == nil {
		t.Fatalf("another applicant sees a pending file:\n%s", out)
	}
	if out, err := g.SFTP(hr, "ls -l "+u.Name+"/scan.bin"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("HR sees the pending file (%v):\n%s", err, out)
	}
	if out, err := g.SFTP(u, "reput "+big+" scan.bin"); err != nil {
		t.Fatalf("reput: %v\n%s", err, out)
	}
	if got := objectSHA(t, c, bucket, key); got != sum {
		t.Fatalf("resumed object sha %s, want %s", got, sum)
	}
	assertSSE(t, c, bucket, key)
	off, received := resumedAt(t, g, "/scan.bin")
	if off < 5*resumePartSize || off%resumePartSize != 0 {
		t.Errorf("resumed at %d, want a whole number of parts >= 5", off)
	}
	resent := received - off
	t.Logf("interrupted at %d of %d bytes (%.0f %%), resumed at %d: %d bytes re-sent (part size %d)",
		received, 8*resumePartSize, 100*float64(received)/float64(8*resumePartSize), off, resent, resumePartSize)
	if resent >= resumePartSize {
		t.Errorf("%d bytes re-sent, want under one part", resent)
	}
	if n := pendingParts(t, c, bucket, key); n != 0 {
		t.Errorf("%d parts still pending after completion", n)
	}
	out2, _ := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(vfs.ResumePrefix)})
	if len(out2.Contents) != 0 {
		t.Errorf("manifests left after completion: %d", len(out2.Contents))
	}
}

// TestResumeOtherClientsAndInstances: an upload interrupted through
// OpenSSH sftp is finished by lftp put -c, by psftp reput, and through a
// second gateway instance sharing the bucket (the manifest lives there).
func TestResumeOtherClientsAndInstances(t *testing.T) {
	needTool(t, "sftp")
	g := resumeGateway(t)
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	big, sum := randomFile(t, dir, "big.bin", 8*resumePartSize)
	events := g.Events // where the resumed upload is audited
	finish := map[string]func(name string) (string, error){
		"lftp put -c": func(name string) (string, error) {
			needTool(t, "lftp")
			connect := "ssh -a -x " + strings.Join(g.SSHArgs(u), " ")
			script := []string{
				"set sftp:connect-program '" + connect + "'", "set cmd:fail-exit yes", "set net:max-retries 2",
				fmt.Sprintf("open -u %s, -p %d sftp://%s", u.Name, g.Port, g.Host),
				"put -c big.bin -o " + name,
			}
			return cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir), timeout: 2 * time.Minute}.run(t, "lftp", "-c", strings.Join(script, "; "))
		},
		"psftp reput": func(name string) (string, error) {
			needTool(t, "psftp")
			needTool(t, "puttygen")
			return cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir)}.run(t, "psftp", "-batch", "-hostkey", cliFingerprint(t, g),
				"-i", cliPPK(t, u, dir), "-P", fmt.Sprint(g.Port), "-b", cliScript(t, dir, name+".txt", "reput "+big+" "+name, "quit"), u.Name+"@"+g.Host)
		},
		"second instance": func(name string) (string, error) {
			g2 := testgw.Start(t, testgw.Options{Stores: g.Stores, UsersFile: g.UsersFile(),
				Tweak: func(c *gateway.Config) { c.ResumeWindow = time.Hour }})
			events = g2.Events
			return g2.SFTP(u, "reput "+big+" "+name)
		},
	}
	i := 0
	for how, fn := range finish {
		i++
		name := fmt.Sprintf("f%d.bin", i)
		t.Run(how, func(t *testing.T) {
			events = g.Events
			key := cliHome(u) + name
			killedPut(t, g, sftpCmd(g, u, "put "+big+" "+name, "-l", "81920"), key, 4)
			if out, err := fn(name); err != nil {
				t.Fatalf("%s: %v\n%s", how, err, out)
			}
			if got := objectSHA(t, c, bucket, key); got != sum {
				t.Fatalf("resumed object sha %s, want %s", got, sum)
			}
			assertSSE(t, c, bucket, key)
			// Not started again from 0: the kept parts were used.
			if rs := events.Find(audit.Event{Op: "upload_resumed", Path: "/" + name}); len(rs) != 1 || rs[0].Bytes < 4*resumePartSize {
				t.Errorf("upload_resumed events: %+v, want one at >= 4 parts", rs)
			}
		})
	}
}

// runResumeBin starts `sftpgw serve` with resume_window and 5 MiB parts:
// fresh buckets and directory, or (prev set) prev's, as a restart.
func runResumeBin(t *testing.T, prev *binGateway) *binGateway {
	t.Helper()
	b := &binGateway{t: t, bin: sftpgwBinary(t), grace: "1s", log: &opsBuffer{}, exited: make(chan struct{})}
	if prev == nil {
		b.dir, b.files, b.logs, b.instance = t.TempDir(), testenv.S3(t), testenv.S3(t), "gw-"+randomSuffixOps()
		b.cfgPath, b.usersPath = filepath.Join(b.dir, "sftpgw.hcl"), filepath.Join(b.dir, "users.hcl")
		if err := authn.SaveUsers(b.usersPath, authn.NewUserSet()); err != nil {
			t.Fatal(err)
		}
	} else {
		b.dir, b.files, b.logs, b.instance, b.cfgPath, b.usersPath = prev.dir, prev.files, prev.logs, prev.instance, prev.cfgPath, prev.usersPath
	}
	return b
}

// start writes the config and runs the binary until it listens.
func (b *binGateway) startResume() {
	t := b.t
	cfg := strings.Replace(b.config(partnerPerms), "shutdown_grace", "resume_window = \"1h\"\nshutdown_grace", 1)
	cfg = strings.ReplaceAll(cfg, "sse = \"AES256\"\n", "sse = \"AES256\"\n  part_size = \"5MiB\"\n")
	b.writeConfig(cfg)
	b.cmd = exec.Command(b.bin, "serve", "--config", b.cfgPath)
	b.cmd.Dir = b.dir
	b.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+b.files.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+b.files.SecretAccessKey,
		"AWS_REGION="+b.files.Region, "AWS_EC2_METADATA_DISABLED=true")
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.exitErr = b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() {
		select {
		case <-b.exited:
		default:
			_ = b.cmd.Process.Kill()
			<-b.exited
		}
		if t.Failed() {
			t.Logf("sftpgw log:\n%s", b.log.String())
		}
	})
	b.waitLog(`"@message":"listening"`, 20*time.Second)
	b.sshPort = b.loggedPort("listening")
	pub, err := os.ReadFile(filepath.Join(b.dir, "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	b.knownHosts = filepath.Join(b.dir, "known_hosts")
	if err := os.WriteFile(b.knownHosts, fmt.Appendf(nil, "[127.0.0.1]:%d %s", b.sshPort, pub), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestResumeAfterGatewaySIGKILL: the gateway process is killed mid-upload
// (no chance to write anything at the end); after a restart, reput
// continues from the manifest checkpointed as parts completed.
func TestResumeAfterGatewaySIGKILL(t *testing.T) {
	needTool(t, "sftp")
	b := runResumeBin(t, nil)
	u := b.addUser("partner")
	b.startResume()
	c := testenv.Client(t, b.files)
	bucket := b.files.Bucket
	key := "partner/" + u.Name + "/big.bin"
	big, sum := randomFile(t, t.TempDir(), "big.bin", 8*resumePartSize)
	args := append([]string{"-l", "81920"}, b.sftpArgs(u)...)
	cmd := exec.Command("sftp", args...)
	cmd.Env = append(os.Environ(), "DISPLAY=", "SSH_AUTH_SOCK=")
	cmd.Stdin = strings.NewReader("put " + big + " big.bin\n")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, 60*time.Second, "4 parts and their checkpoint", func() bool {
		out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(vfs.ResumePrefix)})
		return pendingParts(t, c, bucket, key) >= 4 && err == nil && len(out.Contents) > 0
	})
	_ = b.cmd.Process.Kill()
	<-b.exited
	<-done
	if exists(t, c, bucket, key) {
		t.Fatal("the interrupted upload is visible")
	}
	b2 := runResumeBin(t, b)
	b2.startResume()
	if out, err := b2.sftp(u, "reput "+big+" big.bin"); err != nil {
		t.Fatalf("reput after the restart: %v\n%s", err, out)
	}
	if got := objectSHA(t, c, bucket, key); got != sum {
		t.Fatalf("resumed object sha %s, want %s", got, sum)
	}
	assertSSE(t, c, bucket, key)
	if !strings.Contains(b2.log.String(), "upload_resumed") {
		t.Errorf("the restarted gateway did not log upload_resumed")
	}
}

// TestResumeDiscardAndExpiry: a plain (truncating) put after an
// interruption discards the kept parts; an interruption left past the
// window is aborted by the sweeper: nothing in ListMultipartUploads, no
// manifest.
func TestResumeDiscardAndExpiry(t *testing.T) {
	needTool(t, "sftp")
	g := resumeGateway(t)
	u := g.AddUser("applicant", false)
	c, bucket := s3Client(t, g, "files")
	key := cliHome(u) + "f.bin"
	big, sum := randomFile(t, t.TempDir(), "f.bin", 8*resumePartSize)
	manifests := func() int {
		out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(vfs.ResumePrefix)})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Contents)
	}

	killedPut(t, g, sftpCmd(g, u, "put "+big+" f.bin", "-l", "81920"), key, 3)
	if out, err := g.SFTP(u, "put "+big+" f.bin"); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	if got := objectSHA(t, c, bucket, key); got != sum {
		t.Fatalf("sha %s, want %s", got, sum)
	}
	if n, m := pendingParts(t, c, bucket, key), manifests(); n != 0 || m != 0 {
		t.Fatalf("after a fresh put: %d parts pending, %d manifests; want none", n, m)
	}
	if len(g.Events.Find(audit.Event{Op: "upload_resumed"})) != 0 {
		t.Fatal("a plain put was audited as resumed")
	}

	killedPut(t, g, sftpCmd(g, u, "put "+big+" g.bin", "-l", "81920"), cliHome(u)+"g.bin", 3)
	st := g.Stores["files"]
	if n, err := vfs.SweepResumable(context.Background(), st, time.Hour, time.Now()); err != nil || n != 0 {
		t.Fatalf("sweep within the window removed %d (%v)", n, err)
	}
	if n, err := vfs.SweepResumable(context.Background(), st, time.Hour, time.Now().Add(time.Hour+time.Minute)); err != nil || n != 1 {
		t.Fatalf("sweep past the window removed %d (%v), want 1", n, err)
	}
	ups, err := c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 || manifests() != 0 {
		t.Fatalf("after expiry: %d multipart uploads, %d manifests; want none", len(ups.Uploads), manifests())
	}
	if out, err := g.SFTP(u, "ls -l g.bin"); err == nil {
		t.Fatalf("the expired upload is still shown:\n%s", out)
	}
}

// TestResumeAfterShutdownPastGrace: a gateway shut down past its grace
// keeps the cut-off upload; another instance continues it at the size its
// stat shows (pkg/sftp client: open without truncation, write from there).
func TestResumeAfterShutdownPastGrace(t *testing.T) {
	g := resumeGateway(t)
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	key := "partner/" + u.Name + "/cut.bin"
	cl := opsSFTPClient(t, g, u)
	f, err := cl.Create("cut.bin")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3*resumePartSize+12345)
	_, _ = rand.Read(data)
	if _, err := f.Write(data[:2*resumePartSize+1000]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "two parts stored", func() bool { return pendingParts(t, c, bucket, key) >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := g.Server.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown with a transfer open returned no error")
	}
	_ = f.Close()
	if exists(t, c, bucket, key) {
		t.Fatal("the cut-off upload became an object")
	}

	g2 := testgw.Start(t, testgw.Options{Stores: g.Stores, UsersFile: g.UsersFile(),
		Tweak: func(c *gateway.Config) { c.ResumeWindow = time.Hour }})
	cl2 := opsSFTPClient(t, g2, u)
	fi, err := cl2.Stat("cut.bin")
	if err != nil || fi.Size() != 2*resumePartSize {
		t.Fatalf("stat of the kept upload on the second instance: %v %v, want %d bytes", fi, err, 2*resumePartSize)
	}
	// A wrong offset is refused and the kept upload stays.
	bad, err := cl2.OpenFile("cut.bin", os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	// The client is told why, with the operation-unsupported code.
	var se *sftp.StatusError
	if _, err := bad.WriteAt(data[100:200], 100); !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported ||
		!strings.Contains(err.Error(), fmt.Sprintf("resume must continue at byte %d (the pending upload's size), not at byte 100; upload from byte 0 to start over", fi.Size())) {
		t.Fatalf("write at a wrong offset: %v, want op-unsupported with the reason", err)
	}
	_ = bad.Close()
	f2, err := cl2.OpenFile("cut.bin", os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.WriteAt(data[fi.Size():], fi.Size()); err != nil {
		t.Fatal(err)
	}
	if err := f2.Close(); err != nil {
		t.Fatalf("close of the resumed upload: %v", err)
	}
	h := sha256.Sum256(data)
	if got := objectSHA(t, c, bucket, key); got != hex.EncodeToString(h[:]) {
		t.Fatal("resumed object differs from the data sent")
	}
	assertSSE(t, c, bucket, key)
	if rs := g2.Events.Find(audit.Event{Op: "upload_resumed"}); len(rs) != 1 || rs[0].Bytes != 2*resumePartSize {
		t.Fatalf("upload_resumed events: %+v", rs)
	}
}
