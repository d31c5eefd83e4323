package trail

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conf", "audit.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("second load: %v, same=%v", err, k1.Equal(k2))
	}
	pub, err := LoadPublicKey(path + ".pub")
	if err != nil || !pub.Equal(k1.Public()) {
		t.Fatalf("public key file: %v", err)
	}
	data, _ := os.ReadFile(path + ".pub")
	if strings.Contains(string(data), "PRIVATE") {
		t.Fatal("private material in the .pub file")
	}

	os.Chmod(path, 0o640)
	if _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key accepted: %v", err)
	}
}

func TestKeyFormats(t *testing.T) {
	dir := t.TempDir()
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 1
	want := ed25519.NewKeyFromSeed(seed)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	der, _ := x509.MarshalPKCS8PrivateKey(want)
	sshPEM, err := ssh.MarshalPrivateKey(want, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"seed":    seed,
		"full":    want,
		"pkcs8":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"openssh": pem.EncodeToMemory(sshPEM),
	} {
		k, err := LoadOrCreateKey(write(name, data))
		if err != nil || !k.Equal(want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadOrCreateKey(write("junk", []byte("not a key"))); err == nil {
		t.Error("junk accepted as a key")
	}

	sshPub, _ := ssh.NewPublicKey(want.Public())
	for name, data := range map[string][]byte{
		"raw.pub": want.Public().(ed25519.PublicKey),
		"ssh.pub": ssh.MarshalAuthorizedKey(sshPub),
	} {
		p, err := LoadPublicKey(write(name, data))
		if err != nil || !p.Equal(want.Public()) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if p, err := PublicKeyFile(filepath.Join(dir, "x"), want); err != nil || p != filepath.Join(dir, "x.pub") {
		t.Fatalf("PublicKeyFile: %q %v", p, err)
	}
}
