package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testgw"
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

func (h *roleHome) seed(name string, data []byte) { seed(h.t, h.g, h.store, h.prefix+name, data) }

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
			setup: func(h *roleHome) { h.seed("ls-dir/inside.txt", []byte("x")) },
			cmd:   func(*roleHome) string { return "ls -l ls-dir" },
			effect: func(_ *roleHome, out string) string {
				if !strings.Contains(out, "inside.txt") {
					return "listing lacks inside.txt"
				}
				return ""
			}},
		{name: "stat", path: "/stat.txt", ops: []string{"stat"},
			setup: func(h *roleHome) { h.seed("stat.txt", make([]byte, 4321)) },
			cmd:   func(*roleHome) string { return "ls -l stat.txt" },
			effect: func(_ *roleHome, out string) string {
				if !strings.Contains(out, "4321") {
					return "stat did not show the size 4321"
				}
				return ""
			}},
		{name: "get", path: "/get.txt", ops: []string{"download"},
			setup: func(h *roleHome) { h.seed("get.txt", getData) },
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
			setup: func(h *roleHome) { h.seed("overwrite.txt", []byte("old content")) },
			cmd:   func(h *roleHome) string { return "put " + h.upload + " overwrite.txt" },
			effect: func(h *roleHome, _ string) string {
				if h.sha("overwrite.txt") != h.upSHA {
					return "object was not replaced"
				}
				return ""
			}},
		{name: "rm", path: "/rm.txt", ops: []string{"delete"},
			setup: func(h *roleHome) { h.seed("rm.txt", []byte("x")) },
			cmd:   func(*roleHome) string { return "rm rm.txt" },
			effect: func(h *roleHome, _ string) string {
				if h.exists("rm.txt") {
					return "object still there"
				}
				return ""
			}},
		{name: "rename", path: "/rename.txt", ops: []string{"rename"},
			setup: func(h *roleHome) { h.seed("rename.txt", []byte("x")) },
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
			setup: func(h *roleHome) { h.seed("olddir/", nil) },
			cmd:   func(*roleHome) string { return "rmdir olddir" },
			effect: func(h *roleHome, _ string) string {
				if h.exists("olddir/") {
					return "directory marker still there"
				}
				return ""
			}},
		{name: "chmod", path: "/chmod.txt", ops: []string{"setstat"},
			setup: func(h *roleHome) { h.seed("chmod.txt", []byte("x")) },
			cmd:   func(*roleHome) string { return "chmod 600 chmod.txt" },
			effect: func(h *roleHome, _ string) string {
				if !h.exists("chmod.txt") {
					return "object vanished"
				}
				return ""
			}},
	}
}

// TestRolePermissionMatrix logs in as each shipped role with the real
// OpenSSH client and tries every operation. Allowed means: the command
// succeeded, its effect is visible in S3 and an "ok" audit event names it.
// Denied means: sftp printed "Permission denied", the bucket is unchanged
// and a "denied" audit event names the operation. The printed matrix is
// computed from these observations.
func TestRolePermissionMatrix(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	roles := testgw.StandardRoles()
	allowed := map[string][]string{
		"applicant": {"ls", "stat", "put", "overwrite", "rm", "rename", "mkdir", "rmdir", "chmod"},
		"hr":        {"ls", "stat", "get", "put", "overwrite", "rm", "rename", "mkdir", "rmdir", "chmod"},
		"partner":   {"ls", "stat", "get", "put", "overwrite", "rm", "rename", "mkdir", "rmdir", "chmod"},
		"auditor":   {"ls", "stat", "get"},
	}
	// The auditor reads what the audit trail wrote: put a few such objects there.
	for i := range 3 {
		seed(t, g, "logs", fmt.Sprintf("audit/2025/01/0%d/batch-%d.jsonl", i+1, i), []byte(`{"seq":1}`+"\n"))
	}
	ops := matrixOps()
	observed := map[string]map[string]string{}
	for _, role := range []string{"applicant", "hr", "partner", "auditor"} {
		t.Run(role, func(t *testing.T) {
			u := g.AddUser(role, roles[role].MFA)
			prefix, err := roles[role].HomeFor(u.Name)
			if err != nil {
				t.Fatal(err)
			}
			h := &roleHome{t: t, g: g, store: roles[role].Storage, prefix: prefix, local: t.TempDir()}
			h.upload, h.upSHA = randomFile(t, h.local, "upload.bin", 70_000)
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
				want := "denied"
				if slices.Contains(allowed[role], op.name) {
					want = "allowed"
				}
				if observed[role][op.name] != want {
					t.Errorf("%s %s: %s, want %s", role, op.name, observed[role][op.name], want)
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
	for _, role := range []string{"applicant", "hr", "partner", "auditor"} {
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
	t.Logf("permission matrix observed with OpenSSH sftp (hr from 127.0.0.1, inside download_from):\n%s", tb.String())
}

// runMatrixOp runs one operation and classifies what happened: "allowed",
// "denied", or a description of an inconsistent outcome.
func runMatrixOp(t *testing.T, g *testgw.Gateway, c *sshClient, h *roleHome, op matrixOp) string {
	t.Helper()
	before := snapshot(t, g, h.store)
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
		if d := diffSnapshots(before, snapshot(t, g, h.store)); d != "" {
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

func randomName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
