package authn

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Options left empty get the documented defaults.
func TestNewDefaults(t *testing.T) {
	if a := New(Options{}); a.issuer != "sftpgw" {
		t.Errorf("default issuer %q", a.issuer)
	}
	if a := New(Options{Issuer: "acme"}); a.issuer != "acme" {
		t.Errorf("issuer %q, want acme", a.issuer)
	}
}

// MaxAuthTries: zero or unlimited (negative) become 6, a limit is kept.
func TestConfigureMaxAuthTries(t *testing.T) {
	a := New(Options{})
	for in, want := range map[int]int{0: 6, -1: 6, 1: 1, 3: 3} {
		cfg := &ssh.ServerConfig{MaxAuthTries: in}
		a.Configure(cfg)
		if cfg.MaxAuthTries != want {
			t.Errorf("MaxAuthTries %d became %d, want %d", in, cfg.MaxAuthTries, want)
		}
	}
}

// SetRoles names unnamed roles after their key and warns, once per role,
// about a home that no login could use.
func TestSetRolesNamesAndWarns(t *testing.T) {
	var logs syncBuffer
	a := New(Options{Log: testLogger(&logs)})
	a.SetRoles(map[string]*Role{
		"good": {Home: "user/{name}/"},
		"bad":  {Name: "bad", Home: "user/{user}/"},
		"gone": nil,
	})
	if r, ok := a.role("good"); !ok || r.Name != "good" {
		t.Errorf("unnamed role: %+v %v", r, ok)
	}
	if _, ok := a.role("gone"); ok {
		t.Error("nil role installed")
	}
	out := logs.String()
	if strings.Count(out, "role home is invalid") != 1 || !strings.Contains(out, "role=bad") {
		t.Errorf("log:\n%s", out)
	}
}

// The MFA prompt gate counts each user's connections at the prompt: a
// place is given back on leave, and only the user's own.
func TestPromptGate(t *testing.T) {
	g := &promptGate{max: 2, n: map[string]int{}}
	if !g.enter("a") || !g.enter("a") || g.enter("a") {
		t.Fatal("gate of 2 did not fill at 2")
	}
	if !g.enter("b") {
		t.Fatal("another user's prompts counted")
	}
	g.leave("a")
	if !g.enter("a") || g.enter("a") {
		t.Fatal("leave gave back other than one place")
	}
	g.leave("a")
	g.leave("a")
	g.leave("b")
	if len(g.n) != 0 {
		t.Errorf("empty gate keeps entries: %v", g.n)
	}
}
