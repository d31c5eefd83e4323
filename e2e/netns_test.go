package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// netNS is a network namespace joined to the host by a veth pair: the
// host side has HostIP, programs run with Exec see NSIP as their source.
type netNS struct {
	Name, HostIP, NSIP string
}

// Exec is the prefix that runs a program inside the namespace.
func (n *netNS) Exec() []string { return []string{"ip", "netns", "exec", n.Name} }

// newNetNS creates a namespace with a veth pair on a free 10.200.x.0/24
// and removes both when the test ends. It needs root and iproute2: without
// them the test fails under SFTPGW_REQUIRE_INTEGRATION=1, else it skips.
func newNetNS(t *testing.T) *netNS {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv(testenv.EnvRequire) == "1" {
			t.Fatalf("network namespaces are required for this test (run as root with iproute2): %s", msg)
		}
		t.Skipf("network namespaces unavailable: %s", msg)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		unavailable("ip (iproute2) not installed")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	ns := &netNS{Name: "sftpgw-" + id}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		unavailable("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns.Name).Run() })
	// Interface names are limited to 15 bytes.
	host, peer := "sgw"+id+"h", "sgw"+id+"n"
	used, _ := exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	subnet := ""
	for range 50 {
		x, _ := rand.Int(rand.Reader, big.NewInt(250))
		s := fmt.Sprintf("10.200.%d.", x.Int64()+1)
		if !strings.Contains(string(used), s) {
			subnet = s
			break
		}
	}
	if subnet == "" {
		t.Fatal("no free 10.200.x.0/24 subnet")
	}
	ns.HostIP, ns.NSIP = subnet+"1", subnet+"2"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() }) // removes the peer too
	run("link", "set", peer, "netns", ns.Name)
	run("addr", "add", ns.HostIP+"/24", "dev", host)
	run("link", "set", host, "up")
	run("netns", "exec", ns.Name, "ip", "addr", "add", ns.NSIP+"/24", "dev", peer)
	run("netns", "exec", ns.Name, "ip", "link", "set", peer, "up")
	run("netns", "exec", ns.Name, "ip", "link", "set", "lo", "up")
	return ns
}

// TestAddressRulesFromAnotherNetwork runs real clients from a second
// network: HR may log in from anywhere but download only from
// 127.0.0.0/8; partners may not log in from outside 127.0.0.0/8 at all.
func TestAddressRulesFromAnotherNetwork(t *testing.T) {
	needTool(t, "sftp")
	ns := newNetNS(t)
	g := testgw.Start(t, testgw.Options{Listen: ns.HostIP + ":0"})
	hr := g.AddUser("hr", true)
	partner := g.AddUser("partner", false)
	seedObject(t, g, "files", "user/report.txt", []byte("hr only\n"))
	local := t.TempDir()

	t.Run("hr logs in but may not download", func(t *testing.T) {
		c := &sshClient{g: g, u: hr, prefix: ns.Exec()}
		out, err := c.sftp("ls -l\nget report.txt " + filepath.Join(local, "report.txt"))
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Fatalf("download from %s: err=%v\n%s", ns.NSIP, err, out)
		}
		mustContain(t, out, "report.txt") // the listing ran: logged in
		if _, err := os.Stat(filepath.Join(local, "report.txt")); err == nil {
			t.Error("a local file was written")
		}
		if !authOKFrom(g, hr.Name, ns.NSIP) {
			t.Errorf("no auth ok event from %s", ns.NSIP)
		}
		ev := g.Events.Find(audit.Event{User: hr.Name, Op: "download", Result: "denied"})
		if len(ev) != 1 || !strings.Contains(ev[0].Detail, "download_from") {
			t.Errorf("download denial events: %+v", ev)
		}
	})

	t.Run("partner may not log in", func(t *testing.T) {
		c := &sshClient{g: g, u: partner, prefix: ns.Exec()}
		out, err := c.sftp("pwd")
		if err == nil || strings.Contains(out, "Remote working directory") {
			t.Fatalf("partner logged in from %s:\n%s", ns.NSIP, out)
		}
		found := false
		for _, e := range g.Events.Find(audit.Event{Kind: "auth", User: partner.Name, Result: "failure", ErrClass: "address_not_allowed"}) {
			found = found || strings.HasPrefix(e.Client, ns.NSIP+":")
		}
		if !found {
			t.Errorf("no address_not_allowed failure from %s", ns.NSIP)
		}
		if authOKFrom(g, partner.Name, ns.NSIP) {
			t.Error("auth ok event for the partner from outside allow_from")
		}
	})
}
