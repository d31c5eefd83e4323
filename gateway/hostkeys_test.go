package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/authn"
)

func signerOf(t *testing.T, k crypto.Signer) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHostKeyPolicy: host key types ssh-audit flags are refused at start,
// not silently offered (or silently dropped).
func TestHostKeyPolicy(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 2048)
	big, _ := rsa.GenerateKey(rand.Reader, 3072)
	auth := authn.New(authn.Options{})
	cases := []struct {
		name    string
		key     crypto.Signer
		wantErr string
	}{
		{"ed25519", ed, ""},
		{"rsa3072", big, ""},
		{"rsa2048", small, "2048 bits"},
		{"ecdsa", ec, "ecdsa-sha2-nistp256 is not allowed"},
	}
	for _, c := range cases {
		_, err := New(Config{HostKeys: []ssh.Signer{signerOf(t, c.key)}, Auth: auth})
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: err = %v, want %q", c.name, err, c.wantErr)
		}
	}
	// An override without host key algorithms keeps the default policy.
	alg := DefaultAlgorithms()
	alg.HostKeys = nil
	if _, err := New(Config{HostKeys: []ssh.Signer{signerOf(t, ec)}, Auth: auth, Algorithms: &alg}); err == nil {
		t.Error("ecdsa host key accepted through an Algorithms override without HostKeys")
	}
	alg.HostKeys = []string{ssh.KeyAlgoED25519}
	if _, err := New(Config{HostKeys: []ssh.Signer{signerOf(t, big)}, Auth: auth, Algorithms: &alg}); err == nil {
		t.Error("RSA host key accepted although no rsa-sha2 algorithm is allowed")
	}
}
