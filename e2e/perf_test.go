package e2e

import (
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// TestOpenSSHTransferSettings checks the two settings make bench showed to
// matter most, as a stock OpenSSH client sees them: limits@openssh.com
// (255 KiB requests, 16 in flight) and a cipher other than the slow Go
// chacha20-poly1305, on both ends of the connection.
func TestOpenSSHTransferSettings(t *testing.T) {
	needTool(t, "sftp")
	p, _ := randomFile(t, t.TempDir(), "f", 1<<20)

	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	out, err := g.SFTP(u, "put "+p+" f\n", "-vvv")
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	mustContain(t, out,
		"server upload/download buffer sizes 261120 / 261120; using 261120 / 261120",
		"server handle limit 16; using 16",
		"kex: client->server cipher: aes128-ctr MAC: hmac-sha2-256-etm@openssh.com")
	if strings.Contains(out, "cipher: chacha20") {
		t.Errorf("chacha20 negotiated:\n%s", out)
	}
	var cipher string
	for _, e := range g.Events.All() {
		if e.Kind == "session_start" {
			cipher = e.Cipher
		}
	}
	if cipher != "aes128-ctr" {
		t.Errorf("session_start records cipher %q, want aes128-ctr", cipher)
	}

	// Without the extension the client stays at its 32 KiB default, which
	// is what the bench's "32KiB requests" variant compares against.
	plain := testgw.Start(t, testgw.Options{Tweak: func(c *gateway.Config) { c.SFTP.DisableLimitsExtension = true }})
	pu := plain.AddUser("partner", false)
	out, err = plain.SFTP(pu, "put "+p+" f\n", "-vvv")
	if err != nil {
		t.Fatalf("sftp without limits: %v\n%s", err, out)
	}
	if strings.Contains(out, "server upload/download buffer sizes") {
		t.Errorf("limits@openssh.com used although disabled:\n%s", out)
	}
}
