package onboard

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/internal/testenv"
)

// Two files written by puttygen 0.78 (puttygen -t ed25519 -C ...) and the
// seeds `puttygen -O private-openssh-new` exported from them.
var ppkVectors = []struct{ seed, comment, ppk string }{{
	seed:    "a8d7b0e7ad091642aaee0a6368fe06609c84f64df9dfc45ac5b4d6639dffe57a",
	comment: "test",
	ppk: `PuTTY-User-Key-File-3: ssh-ed25519
Encryption: none
Comment: test
Public-Lines: 2
AAAAC3NzaC1lZDI1NTE5AAAAIJMaw3YYSao4/XBQD9AKn//s2pWLIpjZkdR3VzIG
Mlfb
Private-Lines: 1
AAAAIKjXsOetCRZCqu4KY2j+BmCchPZN+d/EWsW01mOd/+V6
Private-MAC: 50b87657a63dcefc6ddbbb70f64159d2b5b5f0a759b8ef1d3809e36746bcb4fa
`}, {
	seed:    "bd794e16f16bd267e8f1546478b89af7c6353b54cf91b1fc072ac5983d50a634",
	comment: "a much longer comment with spaces, ümlauts & <xml> chars to test the MAC",
	ppk: `PuTTY-User-Key-File-3: ssh-ed25519
Encryption: none
Comment: a much longer comment with spaces, ümlauts & <xml> chars to test the MAC
Public-Lines: 2
AAAAC3NzaC1lZDI1NTE5AAAAIHNHrMWJdN5lL9W8jPwvs3W3TfhXtlD1vHqfILKU
L7to
Private-Lines: 1
AAAAIL15Thbxa9Jn6PFUZHi4mvfGNTtUz5Gx/AcqxZg9UKY0
Private-MAC: 27169af46506a51811578d9f3e87669b02cb7cea8a9927c57dfa21269cea4342
`}}

func TestPPKMatchesPuttygenOutput(t *testing.T) {
	for _, v := range ppkVectors {
		seed, _ := hex.DecodeString(v.seed)
		got := string(PPK(ed25519.NewKeyFromSeed(seed), v.comment))
		if got != v.ppk {
			t.Errorf("PPK differs from puttygen's:\ngot:\n%s\nwant:\n%s", got, v.ppk)
		}
	}
}

func needPuttygen(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("puttygen"); err != nil {
		if os.Getenv(testenv.EnvRequire) == "1" {
			t.Fatal("puttygen is not installed")
		}
		t.Skip("puttygen not installed")
	}
}

// TestPPKReadByPuttygen has puttygen load our files: it checks the MAC on
// load, and its fingerprint and OpenSSH export must give back our key.
// Seeds with zero bytes at either end catch a writer that trims them.
func TestPPKReadByPuttygen(t *testing.T) {
	needPuttygen(t)
	dir := t.TempDir()
	seeds := [][]byte{bytes.Repeat([]byte{0}, 32), append(bytes.Repeat([]byte{7}, 31), 0)}
	for range 3 {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, k.Seed())
	}
	for i, seed := range seeds {
		key := ed25519.NewKeyFromSeed(seed)
		f := filepath.Join(dir, "k.ppk")
		if err := os.WriteFile(f, PPK(key, "u1abc@gw.example"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("puttygen", f, "-O", "fingerprint").CombinedOutput()
		if err != nil {
			t.Fatalf("%d: puttygen refused our file: %v\n%s", i, err, out)
		}
		pk, _ := ssh.NewPublicKey(key.Public())
		if !strings.Contains(string(out), ssh.FingerprintSHA256(pk)) {
			t.Errorf("%d: puttygen fingerprint %q, want %s", i, out, ssh.FingerprintSHA256(pk))
		}
		exported := filepath.Join(dir, "k.openssh")
		os.Remove(exported)
		if out, err := exec.Command("puttygen", f, "-O", "private-openssh-new", "-o", exported).CombinedOutput(); err != nil {
			t.Fatalf("%d: export: %v\n%s", i, err, out)
		}
		data, _ := os.ReadFile(exported)
		raw, err := ssh.ParseRawPrivateKey(data)
		if err != nil {
			t.Fatal(err)
		}
		if got := raw.(*ed25519.PrivateKey).Seed(); !bytes.Equal(got, seed) {
			t.Errorf("%d: puttygen exported seed %x, want %x", i, got, seed)
		}
	}
	// A wrong MAC must be refused on loading the private key, or the
	// exports above prove nothing about ours.
	good := string(PPK(ed25519.NewKeyFromSeed(seeds[2]), "x"))
	bad := good[:strings.Index(good, "Private-MAC: ")+13] + strings.Repeat("0", 64) + "\n"
	f := filepath.Join(dir, "bad.ppk")
	if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("puttygen", f, "-O", "private-openssh-new", "-o", filepath.Join(dir, "bad.openssh")).CombinedOutput()
	if err == nil {
		t.Errorf("puttygen accepted a wrong MAC: %s", out)
	}
}
