package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/vfs"
)

// roleHome is one user's home as the matrix test sees it.
type roleHome struct {
	t      *testing.T
	g      *testgw.Gateway
	store  string
	prefix string // key prefix of the home
	local  string // local scratch directory
	upload string // local file to put, with its SHA-256
	upSHA  string
}

func (h *roleHome) seedObject(name string, data []byte) {
	seedObject(h.t, h.g, h.store, h.prefix+name, data)
}

func (h *roleHome) exists(name string) bool {
	c, bucket := s3Client(h.t, h.g, h.store)
	return exists(h.t, c, bucket, h.prefix+name)
}

func (h *roleHome) sha(name string) string {
	c, bucket := s3Client(h.t, h.g, h.store)
	return objectSHA(h.t, c, bucket, h.prefix+name)
}

// matrixOp is one column of the permission matrix: an sftp command, the
// audit operation(s) that decide it, and how to see that it took effect.
type matrixOp struct {
	name   string
	path   string   // virtual path of the deciding audit event
	ops    []string // audit Op of the decision; the first is the one an allowed run records
	setup  func(h *roleHome)
	cmd    func(h *roleHome) string
	effect func(h *roleHome, out string) string // "" when the allowed effect is there
}

var getData = []byte("content of get.txt, readable only by roles with download\n")

func matrixOps() []matrixOp {
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	return []matrixOp{
		{name: "ls", path: "/ls-dir", ops: []string{"list"},
			setup: func(h *roleHome) { h.seedObject("ls-dir/inside.txt", []byte("x")) },
			cmd:   func(*roleHome) string { return "ls -l ls-dir" },
			effect: func(_ *roleHome, out string) string {
				if !strings.Contains(out, "inside.txt") {
					return "listing lacks inside.txt"
				}
				return ""
			}},
		{name: "stat", path: "/stat.txt", ops: []string{"stat"},
			setup: func(h *roleHome) { h.seedObject("stat.txt", make([]byte, 4321)) },
			cmd:   func(*roleHome) string { return "ls -l stat.txt" },
			effect: func(_ *roleHome, out string) string {
				if !strings.Contains(out, "4321") {
					return "stat did not show the size 4321"
				}
				return ""
			}},
		{name: "get", path: "/get.txt", ops: []string{"download"},
			setup: func(h *roleHome) { h.seedObject("get.txt", getData) },
			cmd:   func(h *roleHome) string { return "get get.txt " + filepath.Join(h.local, "got.txt") },
			effect: func(h *roleHome, _ string) string {
				if _, err := os.Stat(filepath.Join(h.local, "got.txt")); err != nil {
					return "no local file"
				}
				if fileSHA(h.t, filepath.Join(h.local, "got.txt")) != sum(getData) {
					return "downloaded content differs"
				}
				return ""
			}},
		{name: "put", path: "/put.txt", ops: []string{"upload"},
			cmd: func(h *roleHome) string { return "put " + h.upload + " put.txt" },
			effect: func(h *roleHome, _ string) string {
				if !h.exists("put.txt") || h.sha("put.txt") != h.upSHA {
					return "uploaded object missing or different"
				}
				return ""
			}},
		{name: "overwrite", path: "/overwrite.txt", ops: []string{"overwrite", "upload"},
			setup: func(h *roleHome) { h.seedObject("overwrite.txt", []byte("old content")) },
			cmd:   func(h *roleHome) string { return "put " + h.upload + " overwrite.txt" },
			effect: func(h *roleHome, _ string) string {
				if h.sha("overwrite.txt") != h.upSHA {
					return "object was not replaced"
				}
				return ""
			}},
		{name: "rm", path: "/rm.txt", ops: []string{"delete"},
			setup: func(h *roleHome) { h.seedObject("rm.txt", []byte("x")) },
			cmd:   func(*roleHome) string { return "rm rm.txt" },
			effect: func(h *roleHome, _ string) string {
				if h.exists("rm.txt") {
					return "object still there"
				}
				return ""
			}},
		{name: "rename", path: "/rename.txt", ops: []string{"rename"},
			setup: func(h *roleHome) { h.seedObject("rename.txt", []byte("x")) },
			cmd:   func(*roleHome) string { return "rename rename.txt renamed.txt" },
			effect: func(h *roleHome, _ string) string {
				if h.exists("rename.txt") || !h.exists("renamed.txt") {
					return "object not moved"
				}
				return ""
			}},
		{name: "mkdir", path: "/newdir", ops: []string{"mkdir"},
			cmd: func(*roleHome) string { return "mkdir newdir" },
			effect: func(h *roleHome, _ string) string {
				if !h.exists("newdir/") {
					return "no directory marker"
				}
				return ""
			}},
		{name: "rmdir", path: "/olddir", ops: []string{"rmdir"},
			setup: func(h *roleHome) { h.seedObject("olddir/", nil) },
			cmd:   func(*roleHome) string { return "rmdir olddir" },
			effect: func(h *roleHome, _ string) string {
				if h.exists("olddir/") {
					return "directory marker still there"
				}
				return ""
			}},
		{name: "chmod", path: "/chmod.txt", ops: []string{"setstat"},
			setup: func(h *roleHome) { h.seedObject("chmod.txt", []byte("x")) },
			cmd:   func(*roleHome) string { return "chmod 600 chmod.txt" },
			effect: func(h *roleHome, _ string) string {
				if !h.exists("chmod.txt") {
					return "object vanished"
				}
				return ""
			}},
	}
}

// matrixPerm is the permission that decides each matrix operation.
var matrixPerm = map[string]vfs.Op{
	"ls": vfs.OpList, "stat": vfs.OpStat, "get": vfs.OpDownload, "put": vfs.OpUpload,
	"overwrite": vfs.OpOverwrite, "rm": vfs.OpDelete, "rename": vfs.OpRename, "mkdir": vfs.OpMkdir,
	"rmdir": vfs.OpRmdir, "chmod": vfs.OpSetstat,
}

// TestRolePermissionMatrix logs in as each role of the shipped
// configuration (configs/sftpgw.example.hcl, parsed as the gateway parses
// it; only its address ranges are made loopback) with the real OpenSSH
// client and tries every operation. Allowed means: the command succeeded,
// its effect is visible in S3 and an "ok" audit event names it. Denied
// means: sftp printed "Permission denied", the bucket is unchanged and a
// "denied" audit event names the operation.
//
// Each observation must match the role's permission list, and the table
// built from the observations must be the one in README.md and
// docs/permissions.md: a change to the shipped roles fails here until the
// documents are regenerated (SFTPGW_UPDATE_DOCS=1 rewrites both tables).
func TestRolePermissionMatrix(t *testing.T) {
	needTool(t, "sftp")
	roles, order := testgw.ExampleRoles(t)
	g := testgw.Start(t, testgw.Options{Roles: roles})
	// The auditor reads what the audit trail wrote: put a few such objects there.
	for i := range 3 {
		seedObject(t, g, "logs", fmt.Sprintf("audit/2025/01/0%d/batch-%d.jsonl", i+1, i), []byte(`{"seq":1}`+"\n"))
	}
	ops := matrixOps()
	observed := map[string]map[string]string{}
	for _, role := range order {
		t.Run(role, func(t *testing.T) {
			r := roles[role]
			u := g.AddUser(role, r.MFA)
			prefix, err := r.HomeFor(u.Name)
			if err != nil {
				t.Fatal(err)
			}
			h := &roleHome{t: t, g: g, store: r.Storage, prefix: prefix, local: t.TempDir()}
			// Text passes every role's allowed_types (txt is in the shipped lists).
			h.upload, h.upSHA = textFile(t, h.local, "upload.txt", 70_000)
			for _, op := range ops {
				if op.setup != nil {
					op.setup(h)
				}
			}
			c := &sshClient{g: g, u: u}
			c.startMaster(t) // one login (one TOTP code for hr), one session per operation
			observed[role] = map[string]string{}
			for _, op := range ops {
				observed[role][op.name] = runMatrixOp(t, g, c, h, op)
				// The client is on loopback, inside every (localised) range.
				want := "denied"
				if r.Perms.Has(matrixPerm[op.name]) {
					want = "allowed"
				}
				if observed[role][op.name] != want {
					t.Errorf("%s %s: %s; the role's permissions %v say %s", role, op.name, observed[role][op.name], r.Perms.Names(), want)
				}
			}
		})
	}
	var tb strings.Builder
	tb.WriteString("| role |")
	for _, op := range ops {
		tb.WriteString(" " + op.name + " |")
	}
	tb.WriteString("\n|---|" + strings.Repeat("---|", len(ops)) + "\n")
	for _, role := range order {
		tb.WriteString("| " + role + " |")
		for _, op := range ops {
			v := observed[role][op.name]
			if v == "" {
				v = "not run"
			}
			tb.WriteString(" " + v + " |")
		}
		tb.WriteString("\n")
	}
	t.Logf("permission matrix observed with OpenSSH sftp (from 127.0.0.1, inside every address range):\n%s", tb.String())
	for _, doc := range []string{"../README.md", "../docs/permissions.md"} {
		checkGeneratedTable(t, doc, "| role | ls |", tb.String())
	}
}

// checkGeneratedTable fails unless the markdown table in file that starts
// with a line beginning with header is exactly table. With
// SFTPGW_UPDATE_DOCS=1 it replaces that table instead (nothing else in the
// file changes).
func checkGeneratedTable(t *testing.T, file, header, table string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, header) })
	if start < 0 {
		t.Fatalf("%s: no table starting with %q", file, header)
	}
	end := start
	for end < len(lines) && strings.HasPrefix(lines[end], "|") {
		end++
	}
	have := strings.Join(lines[start:end], "")
	if have == table {
		return
	}
	if os.Getenv("SFTPGW_UPDATE_DOCS") == "1" {
		out := strings.Join(lines[:start], "") + table + strings.Join(lines[end:], "")
		if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: permission table rewritten", file)
		return
	}
	t.Errorf("%s: the permission table differs from what the shipped roles do; if the change is intended, rerun with SFTPGW_UPDATE_DOCS=1.\ndocument:\n%s\nobserved:\n%s", file, have, table)
}

// textFile writes n bytes of UTF-8 text and returns its path and SHA-256.
func textFile(t *testing.T, dir, name string, n int) (string, string) {
	t.Helper()
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(randomSuffix() + " line of a plain text document\n")
	}
	data := []byte(b.String()[:n])
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return path, hex.EncodeToString(sum[:])
}

// runMatrixOp runs one operation and classifies what happened: "allowed",
// "denied", or a description of an inconsistent outcome.
func runMatrixOp(t *testing.T, g *testgw.Gateway, c *sshClient, h *roleHome, op matrixOp) string {
	t.Helper()
	before := bucketSnapshot(t, g, h.store)
	n := len(g.Events.All())
	out, err := c.sftp(op.cmd(h))
	var evs []audit.Event
	for _, e := range g.Events.All()[n:] {
		if e.User == c.u.Name && e.Kind == "file" && e.Path == op.path && slices.Contains(op.ops, e.Op) {
			evs = append(evs, e)
		}
	}
	result := func(r string) bool {
		for _, e := range evs {
			if e.Result == r && (r != "ok" || e.Op == op.ops[0]) {
				return true
			}
		}
		return false
	}
	denied := strings.Contains(out, "Permission denied")
	switch {
	case err == nil && !denied:
		if !result("ok") {
			return "allowed without an ok audit event"
		}
		if why := op.effect(h, out); why != "" {
			t.Logf("%s output:\n%s", op.name, out)
			return "allowed but " + why
		}
		return "allowed"
	case err != nil && denied:
		if !result("denied") {
			return fmt.Sprintf("denied without a denied audit event (events %+v)", evs)
		}
		if d := diffSnapshots(before, bucketSnapshot(t, g, h.store)); d != "" {
			return "denied but the store changed: " + d
		}
		if _, err := os.Stat(filepath.Join(h.local, "got.txt")); op.name == "get" && err == nil {
			return "denied but a local file was written"
		}
		return "denied"
	}
	t.Logf("%s: err=%v output:\n%s", op.name, err, out)
	return fmt.Sprintf("failed otherwise (err=%v)", err)
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestApplicantDownloadSideDoors tries every other way an applicant could
// read a file back: the choke point must refuse each one, nothing of the
// content may reach the client, and the file must stay intact.
func TestApplicantDownloadSideDoors(t *testing.T) {
	needTool(t, "sftp")
	needTool(t, "scp")
	g := testgw.Start(t, testgw.Options{})
	a := g.AddUser("applicant", false)
	other := g.AddUser("applicant", false)
	home := "user/" + a.Name + "/"
	marker := "SIDE-DOOR-SECRET-" + randomSuffix()
	secret := []byte(strings.Repeat(marker+"\n", 40))
	seedObject(t, g, "files", home+"secret.txt", secret)
	seedObject(t, g, "files", home+"movable.txt", []byte("x"))
	c, bucket := s3Client(t, g, "files")
	secretSHA := objectSHA(t, c, bucket, home+"secret.txt")
	local := t.TempDir()
	cl := &sshClient{g: g, u: a}

	leaked := func(t *testing.T, door, out string) {
		t.Helper()
		if strings.Contains(out, marker) {
			t.Errorf("%s: secret content reached the client:\n%s", door, out)
		}
	}
	noLocal := func(t *testing.T, door, name string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(local, name))
		if err == nil && strings.Contains(string(b), marker) {
			t.Errorf("%s: secret content written to %s", door, name)
		}
	}
	mustFail := func(t *testing.T, door, out string, err error, want string) {
		t.Helper()
		leaked(t, door, out)
		if err == nil {
			t.Errorf("%s succeeded:\n%s", door, out)
		} else if want != "" && !strings.Contains(out, want) {
			t.Errorf("%s: output lacks %q:\n%s", door, want, out)
		}
	}

	t.Run("sftp get", func(t *testing.T) {
		out, err := cl.sftp("get secret.txt " + filepath.Join(local, "get.txt"))
		mustFail(t, "get", out, err, "Permission denied")
		noLocal(t, "get", "get.txt")
		out, err = cl.sftp("reget secret.txt " + filepath.Join(local, "get.txt"))
		mustFail(t, "reget", out, err, "")
	})

	t.Run("read through a write handle", func(t *testing.T) {
		sc, err := sftp.NewClient(dialGo(t, g, a))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Open("secret.txt"); !errors.Is(err, os.ErrPermission) {
			t.Errorf("open for reading: %v, want permission denied", err)
		}
		// Without O_TRUNC the open itself may be refused (no in-place
		// edits); with it, it is an upload the applicant may make.
		for _, fl := range []int{os.O_RDWR, os.O_RDWR | os.O_TRUNC} {
			f, err := sc.OpenFile("secret.txt", fl)
			if err != nil {
				if fl&os.O_TRUNC != 0 || !(isFxPermission(err) || isFxUnsupported(err)) {
					t.Errorf("open read-write (flags %#x): %v", fl, err)
				}
				continue
			}
			buf := make([]byte, 4096)
			n, err := f.ReadAt(buf, 0)
			if !isFxPermission(err) {
				t.Errorf("ReadAt on a write handle (flags %#x): n=%d err=%v, want permission denied", fl, n, err)
			}
			leaked(t, "ReadAt", string(buf[:n]))
		}
		// Never Close the handles: that would commit an upload over the
		// file. Dropping the connection aborts them instead.
		_ = sc.Close()
	})

	t.Run("raw packets and extensions", func(t *testing.T) {
		p := newRawSFTP(t, dialGo(t, g, a))
		for _, ext := range []string{"copy-data", "check-file", "check-file-name", "check-file-handle", "md5-hash", "md5-hash-handle", "copy-file"} {
			if _, ok := p.exts[ext]; ok {
				t.Errorf("server announces extension %s", ext)
			}
		}
		if _, code := p.open("secret.txt", pflagRead); code != fxPermissionDenied {
			t.Errorf("OPEN for read: status %d, want %d", code, fxPermissionDenied)
		}
		if h, code := p.open("secret.txt", pflagRead|pflagWrite); code == fxOK {
			if code, err := rawStatus(p.request(fxpRead, rawCat(rawStr(h), rawU64(0), rawU32(4096)))); err != nil || code != fxPermissionDenied {
				t.Errorf("READ on a read-write handle: status %d err %v, want %d", code, err, fxPermissionDenied)
			}
		} else if code != fxOpUnsupported && code != fxPermissionDenied {
			t.Errorf("OPEN read-write without truncation: status %d", code)
		}
		rw, code := p.open("secret.txt", pflagRead|pflagWrite|pflagTrunc)
		if code != fxOK {
			t.Fatalf("OPEN read-write-truncate (an upload): status %d", code)
		}
		if code, err := rawStatus(p.request(fxpRead, rawCat(rawStr(rw), rawU64(0), rawU32(4096)))); err != nil || code != fxPermissionDenied {
			t.Errorf("READ on a read-write handle: status %d err %v, want %d", code, err, fxPermissionDenied)
		}
		wh, code := p.open("copy-target.bin", pflagWrite|pflagCreat|pflagTrunc)
		if code != fxOK {
			t.Fatalf("OPEN for upload: status %d", code)
		}
		hashes := "md5,sha1,sha224,sha256,sha384,sha512,crc32"
		reqs := []struct {
			name string
			data []byte
		}{
			{"copy-data", rawCat(rawStr(rw), rawU64(0), rawU64(0), rawStr(wh), rawU64(0))},
			{"check-file-name", rawCat(rawStr("secret.txt"), rawStr(hashes), rawU64(0), rawU64(0), rawU32(0))},
			{"check-file-handle", rawCat(rawStr(rw), rawStr(hashes), rawU64(0), rawU64(0), rawU32(0))},
			{"check-file", rawCat(rawStr(rw), rawStr(hashes), rawU64(0), rawU64(0), rawU32(0))},
			{"md5-hash", rawCat(rawStr("secret.txt"), rawU64(0), rawU64(0), rawStr(""))},
			{"md5-hash-handle", rawCat(rawStr(rw), rawU64(0), rawU64(0), rawStr(""))},
			{"copy-file", rawCat(rawStr("secret.txt"), rawStr("copy.txt"), []byte{1})},
			{"hardlink@openssh.com", rawCat(rawStr("secret.txt"), rawStr("hard.txt"))},
		}
		for _, r := range reqs {
			code, err := rawStatus(p.extended(r.name, r.data))
			t.Logf("extension %s: status %d", r.name, code)
			if err != nil || (code != fxOpUnsupported && code != fxPermissionDenied) {
				t.Errorf("extension %s: status %d err %v, want OP_UNSUPPORTED or PERMISSION_DENIED", r.name, code, err)
			}
		}
		// Every refusal is audited, including those pkg/sftp answers itself.
		for _, r := range reqs {
			op := "extension:" + r.name
			if r.name == "hardlink@openssh.com" {
				op = "link"
			}
			if len(g.Events.Find(audit.Event{Op: op, Result: "denied"})) == 0 {
				t.Errorf("refused extension %s left no audit event", r.name)
			}
		}
		// The connection stays usable: the refusals were answers, not crashes.
		if _, code := p.open("secret.txt", pflagRead); code != fxPermissionDenied {
			t.Errorf("OPEN after the extensions: status %d", code)
		}
		sums := [][]byte{}
		for _, h := range []hash.Hash{md5.New(), sha1.New(), sha256.New(), sha512.New()} {
			h.Write(secret)
			s := h.Sum(nil)
			sums = append(sums, s, []byte(hex.EncodeToString(s)))
		}
		for _, body := range p.seen {
			if bytes.Contains(body, []byte(marker)) {
				t.Errorf("a reply carried the secret content: %q", body)
			}
			for _, s := range sums {
				if bytes.Contains(body, s) {
					t.Errorf("a reply carried a hash of the secret: %q", body)
				}
			}
		}
	})

	t.Run("scp legacy and sftp modes", func(t *testing.T) {
		out, err := cl.run("", "scp", "-O", a.Name+"@"+g.Host+":secret.txt", filepath.Join(local, "scp-legacy.txt"))
		mustFail(t, "scp -O", out, err, "")
		noLocal(t, "scp -O", "scp-legacy.txt")
		out, err = cl.run("", "scp", a.Name+"@"+g.Host+":secret.txt", filepath.Join(local, "scp-sftp.txt"))
		mustFail(t, "scp (sftp mode)", out, err, "Permission denied")
		noLocal(t, "scp (sftp mode)", "scp-sftp.txt")
	})

	t.Run("exec", func(t *testing.T) {
		for _, remote := range [][]string{{"scp", "-f", "secret.txt"}, {"cat", "secret.txt"}, {"sh", "-c", "cat secret.txt"}} {
			out, err := cl.ssh([]string{"-T"}, remote...)
			// OpenSSH stops at the refused request ("exec request failed").
			mustFail(t, strings.Join(remote, " "), out, err, "request failed")
		}
	})

	t.Run("links", func(t *testing.T) {
		for _, cmd := range []string{"symlink secret.txt link.txt", "ln secret.txt hard.txt", "ln -s secret.txt link2.txt"} {
			out, err := cl.sftp(cmd)
			mustFail(t, cmd, out, err, "")
		}
		for _, name := range []string{"link.txt", "hard.txt", "link2.txt"} {
			out, err := cl.sftp("get " + name + " " + filepath.Join(local, name))
			mustFail(t, "get "+name, out, err, "")
			noLocal(t, "get "+name, name)
			if exists(t, c, bucket, home+name) {
				t.Errorf("%s was created", name)
			}
		}
	})

	t.Run("rename out of the home", func(t *testing.T) {
		out, err := cl.sftp("rename movable.txt ../" + other.Name + "/stolen.txt")
		if err != nil {
			t.Fatalf("rename inside the home: %v\n%s", err, out)
		}
		if !exists(t, c, bucket, home+other.Name+"/stolen.txt") {
			t.Error("rename target did not land inside the home")
		}
		out, err = cl.sftp("rename secret.txt /../../../top.txt\nrename /top.txt secret.txt")
		if err != nil {
			t.Fatalf("rename: %v\n%s", err, out)
		}
	})

	waitFor(t, 30*time.Second, "aborted uploads", func() bool { return g.Server.Uploads().Active() == 0 })
	for _, k := range allKeys(t, c, bucket) {
		if !strings.HasPrefix(k, home) {
			t.Errorf("key %q is outside %s's home", k, a.Name)
		}
	}
	if got := objectSHA(t, c, bucket, home+"secret.txt"); got != secretSHA {
		t.Error("the secret file was changed by the attempts")
	}
	for _, want := range []audit.Event{
		{User: a.Name, Op: "download", Result: "denied"},
		{User: a.Name, Op: "read_from_upload_handle", Result: "denied"},
		{User: a.Name, Op: "ssh_request", Result: "denied"},
		{User: a.Name, Op: "symlink", Result: "denied"},
		{User: a.Name, Op: "link", Result: "denied"},
	} {
		if len(g.Events.Find(want)) == 0 {
			t.Errorf("no audit event %s/%s", want.Op, want.Result)
		}
	}
	if n := len(g.Events.Find(audit.Event{User: a.Name, Op: "download", Result: "ok"})); n != 0 {
		t.Errorf("%d successful downloads audited for an applicant", n)
	}
}

func isFxUnsupported(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported
}

// isFxPermission recognises SSH_FX_PERMISSION_DENIED however pkg/sftp wraps it.
func isFxPermission(err error) bool {
	var se *sftp.StatusError
	return errors.Is(err, os.ErrPermission) || (errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxPermissionDenied)
}

// TestHRSecondFactor: the HR key alone never logs in; an empty, wrong or
// replayed verification code is refused (real OpenSSH keyboard-interactive
// through SSH_ASKPASS).
func TestHRSecondFactor(t *testing.T) {
	needTool(t, "sftp")
	// Every case fails from 127.0.0.1: no ban may decide them instead.
	g := testgw.Start(t, testgw.Options{Lockout: authn.Lockout{MaxIPFailures: 1000, MaxPairFailures: 1000}})
	hr := g.AddUser("hr", true)
	onePrompt := []string{"-o", "NumberOfPasswordPrompts=1"}
	refused := func(t *testing.T, c *sshClient, class string) {
		t.Helper()
		n := len(g.Events.All())
		out, err := c.sftp("pwd")
		if err == nil || strings.Contains(out, "Remote working directory") {
			t.Fatalf("login succeeded: %v\n%s", err, out)
		}
		var classes []string
		for _, e := range g.Events.All()[n:] {
			if e.Kind == "auth" && e.User == hr.Name {
				if e.Result == "ok" {
					t.Errorf("auth ok event for a refused login: %+v", e)
				}
				classes = append(classes, e.ErrClass)
			}
		}
		if class != "" && !slices.Contains(classes, class) {
			t.Errorf("auth failure classes %v, want %s", classes, class)
		}
	}
	t.Run("key only", func(t *testing.T) {
		refused(t, &sshClient{g: g, u: hr, code: "unused", opts: []string{"-o", "KbdInteractiveAuthentication=no"}}, "")
	})
	t.Run("empty code", func(t *testing.T) {
		refused(t, &sshClient{g: g, u: hr, code: " ", opts: onePrompt}, "bad_totp")
	})
	t.Run("wrong code", func(t *testing.T) {
		refused(t, &sshClient{g: g, u: hr, code: wrongCode(t, hr.Secret), opts: onePrompt}, "bad_totp")
	})
	t.Run("replayed code", func(t *testing.T) {
		code := g.Code(hr)
		c := &sshClient{g: g, u: hr, code: code, opts: onePrompt}
		if out, err := c.sftp("pwd"); err != nil {
			t.Fatalf("first use of the code: %v\n%s", err, out)
		}
		refused(t, c, "replayed_totp")
	})
}

// wrongCode returns a six-digit code that no step near now accepts.
func wrongCode(t *testing.T, secret string) string {
	t.Helper()
	valid := map[string]bool{}
	now := time.Now()
	for d := -3; d <= 3; d++ {
		code, err := totp.GenerateCodeCustom(secret, now.Add(time.Duration(d)*30*time.Second),
			totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		valid[code] = true
	}
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%06d", (123457*i+500000)%1000000); !valid[c] {
			return c
		}
	}
}

// TestLockoutPerSource: repeated failures from one address ban that
// address (the right key is refused there too), another address of the
// same user still logs in, and the ban expires. Linux routes all of
// 127/8 to lo, so `BindAddress=127.0.0.2` is a second source.
func TestLockoutPerSource(t *testing.T) {
	needTool(t, "sftp")
	// The authenticator's clock is manual: the ban lasts as long as the
	// test needs, whatever the speed of the machine, and ends when the
	// clock is moved past it.
	const ban = time.Minute
	clock := testgw.NewClock()
	g := testgw.Start(t, testgw.Options{Now: clock.Now, Lockout: authn.Lockout{MaxIPFailures: 3, MaxPairFailures: 3,
		Window: 10 * time.Minute, BaseBan: ban, MaxBan: ban}})
	u := g.AddUser("partner", false)
	thief := *u // the same account name with a key the gateway does not know
	thief.KeyPath = filepath.Join(t.TempDir(), "thief")
	writeKey(t, thief.KeyPath)
	attacker := &sshClient{g: g, u: &thief}
	for i := range 3 {
		if out, err := attacker.sftp("pwd"); err == nil {
			t.Fatalf("attempt %d with the wrong key succeeded:\n%s", i, out)
		}
	}
	legit := &sshClient{g: g, u: u}
	if out, err := legit.sftp("pwd"); err == nil {
		t.Fatalf("the right key got in from the banned address:\n%s", out)
	}
	if len(g.Events.Find(audit.Event{Kind: "auth", User: u.Name, Result: "failure", ErrClass: "banned"})) == 0 {
		t.Error("no audit event for the login refused while banned")
	}
	other := &sshClient{g: g, u: u, opts: []string{"-o", "BindAddress=127.0.0.2"}}
	if out, err := other.sftp("pwd"); err != nil {
		t.Fatalf("login from 127.0.0.2 while 127.0.0.1 is banned: %v\n%s", err, out)
	}
	if !authOKFrom(g, u.Name, "127.0.0.2") {
		t.Error("no auth ok event from 127.0.0.2")
	}
	lo := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	clock.Advance(ban - time.Second)
	if _, b := g.Auth.Banned(lo, u.Name); !b {
		t.Fatal("the ban of 127.0.0.1 ended a second before its length")
	}
	if out, err := legit.sftp("pwd"); err == nil {
		t.Fatalf("the right key got in from the banned address near the end of the ban:\n%s", out)
	}
	clock.Advance(2 * time.Second)
	if _, b := g.Auth.Banned(lo, u.Name); b {
		t.Fatal("127.0.0.1 still banned after the ban's length")
	}
	if out, err := legit.sftp("pwd"); err != nil {
		t.Fatalf("login after the ban expired: %v\n%s", err, out)
	}
	if !authOKFrom(g, u.Name, "127.0.0.1") {
		t.Error("no auth ok event from 127.0.0.1 after the ban")
	}
}

func authOKFrom(g *testgw.Gateway, user, ip string) bool {
	for _, e := range g.Events.Find(audit.Event{Kind: "auth", User: user, Result: "ok"}) {
		if strings.HasPrefix(e.Client, ip+":") {
			return true
		}
	}
	return false
}

// writeKey writes a new ed25519 private key in OpenSSH format.
func writeKey(t *testing.T, path string) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRemovedUserKeyStopsWorking: removing a user from the users file
// (the CLI reloads the running gateway the same way) refuses the next
// login with the same key, without a restart.
func TestRemovedUserKeyStopsWorking(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("applicant", false)
	c := &sshClient{g: g, u: u}
	if out, err := c.sftp("pwd"); err != nil {
		t.Fatalf("login before removal: %v\n%s", err, out)
	}
	g.RemoveUser(u)
	if out, err := c.sftp("pwd"); err == nil {
		t.Fatalf("removed user logged in:\n%s", out)
	}
	if len(g.Events.Find(audit.Event{Kind: "auth", Result: "failure", ErrClass: "unknown_user"})) == 0 {
		t.Error("no unknown_user failure audited for the removed user")
	}
}

// TestNonSFTPChannelsRefused: for every role, a shell, exec, local and
// remote port forwarding, agent and X11 forwarding are refused and
// audited, while sftp on the same connection keeps working. Each role
// logs in once (a multiplexing master with forwarding enabled); every
// attempt is a new request on that authenticated connection.
func TestNonSFTPChannelsRefused(t *testing.T) {
	needTool(t, "ssh")
	needTool(t, "ssh-agent")
	g := testgw.Start(t, testgw.Options{})
	// A target that must never be reached through a forward.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	var reached atomic.Int32
	go func() {
		for {
			conn, err := target.Accept()
			if err != nil {
				return
			}
			reached.Add(1)
			_, _ = conn.Write([]byte("FORWARDED\n"))
			_ = conn.Close()
		}
	}()
	agentSock := startAgent(t)
	roles := testgw.StandardRoles()
	for _, role := range []string{"applicant", "hr", "partner", "auditor"} {
		t.Run(role, func(t *testing.T) {
			u := g.AddUser(role, roles[role].MFA)
			c := &sshClient{g: g, u: u, env: []string{"SSH_AUTH_SOCK=" + agentSock, "DISPLAY=:42"}}
			c.startMaster(t, "-o", "ForwardAgent=yes", "-o", "ForwardX11=yes", "-o", "ForwardX11Trusted=yes")
			n := len(g.Events.All())

			if out, err := c.ssh([]string{"-tt"}); err == nil {
				t.Errorf("shell succeeded:\n%s", out)
			}
			if out, err := c.ssh([]string{"-T"}, "id"); err == nil {
				t.Errorf("exec succeeded:\n%s", out)
			}
			// The client's end of -L is a Unix socket in a directory of
			// ours: no port to find free and lose to another process.
			lsock := filepath.Join(shortTempDir(t), "L")
			if out, err := c.ssh([]string{"-O", "forward", "-L", lsock + ":" + target.Addr().String()}); err != nil {
				t.Fatalf("setting up the client side of -L: %v\n%s", err, out)
			}
			if got := readThrough(t, lsock); got != "" {
				t.Errorf("data came through the local forward: %q", got)
			}
			// A fixed port: a bare "yes" is then a complete reply, so only a
			// refusal makes this fail. It is free when picked so that a
			// gateway that wrongly accepted could bind it; if another
			// process took it meanwhile, this can only miss such a bug,
			// never fail a correct gateway.
			rport := freePort(t)
			if out, err := c.ssh([]string{"-O", "forward", "-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, target.Addr())}); err == nil {
				t.Errorf("remote forward accepted:\n%s", out)
			} else if !strings.Contains(out, "remote port forwarding failed") {
				t.Errorf("-R failed for another reason than a refusal: %v\n%s", err, out)
			}
			if out, err := c.ssh([]string{"-A", "-T"}, "true"); err == nil {
				t.Errorf("session with agent forwarding ran a command:\n%s", out)
			}
			if out, err := c.ssh([]string{"-Y", "-T"}, "true"); err == nil {
				t.Errorf("session with X11 forwarding ran a command:\n%s", out)
			}
			if out, err := c.sftp("pwd"); err != nil {
				t.Errorf("sftp on the same connection: %v\n%s", err, out)
			}
			var got []string
			for _, e := range g.Events.All()[n:] {
				if e.User == u.Name && e.Op == "ssh_request" && e.Result == "denied" {
					got = append(got, e.Path)
				}
			}
			for _, want := range []string{"shell", "exec", "channel:direct-tcpip", "global:tcpip-forward",
				"auth-agent-req@openssh.com", "x11-req"} {
				if !slices.Contains(got, want) {
					t.Errorf("no denied audit event for %s (got %v)", want, got)
				}
			}
		})
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the forward target was reached %d times", n)
	}
}

// startAgent runs an empty ssh-agent for the test; forwarding it must be
// refused whether or not it holds keys.
func startAgent(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sgwa")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	})
	waitFor(t, 10*time.Second, "ssh-agent socket", func() bool { _, err := os.Stat(sock); return err == nil })
	return sock
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// shortTempDir is a fresh directory with a path short enough for a Unix
// socket (t.TempDir's can exceed the 108-byte limit).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// readThrough connects to a local forward (a Unix socket) and returns
// whatever arrives before the forward closes the connection.
func readThrough(t *testing.T, sock string) string {
	t.Helper()
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("the client side of the forward does not listen: %v", err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	return string(b)
}

// sshAuditNewer are algorithms newer than Debian 12's ssh-audit 2.5.0,
// which reports them as "[warn] unknown algorithm". Both are deliberate:
// the ML-KEM hybrid is post-quantum key exchange (OpenSSH 10 default) and
// kex-strict-s is the Terrapin (CVE-2023-48795) countermeasure.
var sshAuditNewer = []string{"mlkem768x25519-sha256", "kex-strict-s-v00@openssh.com"}

// TestSSHAudit runs ssh-audit against the gateway with every host key type
// it accepts (ed25519 and RSA-3072): no [fail] and no [warn] findings
// except "unknown algorithm" for the names above.
func TestSSHAudit(t *testing.T) {
	needTool(t, "ssh-audit")
	rk, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := ssh.NewSignerFromKey(rk)
	g := testgw.Start(t, testgw.Options{Tweak: func(c *gateway.Config) { c.HostKeys = append(c.HostKeys, rs) }})
	out := sshAudit(t, g.Port)
	t.Logf("ssh-audit output:\n%s", out)
	findings, algs := sshAuditFindings(out)
	for _, f := range findings {
		t.Errorf("ssh-audit finding: %s", f)
	}
	for _, want := range []string{"(kex) mlkem768x25519-sha256", "(kex) kex-strict-s-v00@openssh.com",
		"(key) ssh-ed25519", "(key) rsa-sha2-512", "(gen) compression: disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("ssh-audit output lacks %q", want)
		}
	}
	for _, a := range algs {
		weak := a == "ssh-rsa" // SHA-1 signatures
		for _, bad := range []string{"cbc", "sha1", "md5", "arcfour", "3des", "nistp", "group1-", "-96"} {
			weak = weak || strings.Contains(a, bad)
		}
		if weak {
			t.Errorf("weak algorithm offered: %s", a)
		}
	}
	t.Logf("ssh-audit: %d algorithms offered, %d findings: %s", len(algs), len(findings), strings.Join(algs, " "))

	// The check itself must be able to fail: a gateway that also offers a
	// SHA-1 MAC is reported.
	weak := gateway.DefaultAlgorithms()
	weak.MACs = append(weak.MACs, "hmac-sha1")
	gw := testgw.Start(t, testgw.Options{Tweak: func(c *gateway.Config) { c.Algorithms = &weak }})
	if f, _ := sshAuditFindings(sshAudit(t, gw.Port)); len(f) == 0 {
		t.Error("ssh-audit reported nothing for a gateway offering hmac-sha1")
	}
}

func sshAudit(t *testing.T, port int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Exit status 2/3 means warnings/failures, which we classify ourselves.
	out, _ := exec.CommandContext(ctx, "ssh-audit", "-n", "-t", "20", "-p", fmt.Sprint(port), "127.0.0.1").CombinedOutput()
	if !strings.Contains(string(out), "(gen) banner: SSH-2.0-sftpgw") {
		t.Fatalf("ssh-audit did not reach the gateway:\n%s", out)
	}
	return string(out)
}

// sshAuditFindings returns every [fail]/[warn] line that is not an
// "unknown algorithm" note for sshAuditNewer, and the algorithms listed.
func sshAuditFindings(out string) (findings, algs []string) {
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[0], "(") && slices.Contains([]string{"(kex)", "(key)", "(enc)", "(mac)"}, f[0]) {
			cur = f[1]
			algs = append(algs, cur)
		}
		if !strings.Contains(line, "[fail]") && !strings.Contains(line, "[warn]") {
			continue
		}
		if strings.Contains(line, "[warn] unknown algorithm") && slices.Contains(sshAuditNewer, cur) {
			continue
		}
		findings = append(findings, strings.TrimSpace(line))
	}
	return findings, algs
}
