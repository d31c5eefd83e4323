package trail

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/crypto/ssh"
)

// LoadOrCreateKey returns the batch signing key stored at path, creating it
// (PKCS#8 PEM, mode 0600, plus the public key in path+".pub") if the file
// does not exist. Existing keys may be PKCS#8 PEM, an OpenSSH private key
// without passphrase, or a raw 32-byte seed or 64-byte key. A key file that
// group or others can read is refused.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	key, err := loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// O_EXCL: if another process created it meanwhile, use that one.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadKey(path)
	}
	if err != nil {
		return nil, err
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write audit key %s: %w", path, err)
	}
	if _, err := PublicKeyFile(path, key); err != nil {
		return nil, err
	}
	return key, nil
}

func loadKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("audit key %s is accessible by group or others (mode %#o); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("audit key %s: %w", path, err)
	}
	return key, nil
}

func parsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	if blk, _ := pem.Decode(data); blk != nil {
		var k any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "OPENSSH PRIVATE KEY":
			k, err = ssh.ParseRawPrivateKey(data)
		default:
			return nil, fmt.Errorf("unsupported PEM block %q", blk.Type)
		}
		if err != nil {
			return nil, err
		}
		switch k := k.(type) {
		case ed25519.PrivateKey:
			return k, nil
		case *ed25519.PrivateKey:
			return *k, nil
		}
		return nil, fmt.Errorf("not an ed25519 key (%T)", k)
	}
	switch len(data) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(data), nil
	case ed25519.PrivateKeySize:
		k := ed25519.NewKeyFromSeed(data[:ed25519.SeedSize])
		if !bytes.Equal(k, data) {
			return nil, errors.New("raw 64-byte key is inconsistent")
		}
		return k, nil
	}
	return nil, errors.New("neither PEM nor a raw 32- or 64-byte ed25519 key")
}

// PublicKeyFile writes the public half of key to keyPath+".pub" (PKIX PEM,
// mode 0644) so that auditors can verify without the private key, and
// returns that path.
func PublicKeyFile(keyPath string, key ed25519.PrivateKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", err
	}
	path := keyPath + ".pub"
	tmp := path + ".tmp"
	data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return path, nil
}

// LoadPublicKey reads a verification key: PKIX PEM ("PUBLIC KEY", as
// written by PublicKeyFile), an OpenSSH "ssh-ed25519 AAAA..." line, or raw
// 32 bytes.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%s: PEM block %q is not a public key", path, blk.Type)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if pk, ok := k.(ed25519.PublicKey); ok {
			return pk, nil
		}
		return nil, fmt.Errorf("%s: not an ed25519 public key (%T)", path, k)
	}
	if bytes.HasPrefix(data, []byte("ssh-ed25519 ")) {
		pk, _, _, _, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if ck, ok := pk.(ssh.CryptoPublicKey); ok {
			if k, ok := ck.CryptoPublicKey().(ed25519.PublicKey); ok {
				return k, nil
			}
		}
		return nil, fmt.Errorf("%s: not an ed25519 public key", path)
	}
	if len(data) == ed25519.PublicKeySize {
		return ed25519.PublicKey(data), nil
	}
	return nil, fmt.Errorf("%s: neither PEM, ssh-ed25519 nor a raw 32-byte public key", path)
}

// Fingerprint names a verification key for pinning: the lowercase hex
// SHA-256 of the raw 32-byte ed25519 public key. A batch's key_id is its
// first 16 characters.
func Fingerprint(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:])
}

// ParseFingerprint accepts a fingerprint as Fingerprint writes it, with an
// optional "sha256:" prefix, in either case; it returns the canonical form.
func ParseFingerprint(s string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimPrefix(t, "sha256:")
	if b, err := hex.DecodeString(t); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a key fingerprint (64 hex digits, the SHA-256 of the public key)", s)
	}
	return t, nil
}

// CheckPin refuses pub unless its fingerprint is pin (canonical form, see
// ParseFingerprint). An empty pin accepts any key.
func CheckPin(pub ed25519.PublicKey, pin, source string) error {
	if pin == "" {
		return nil
	}
	if got := Fingerprint(pub); got != pin {
		return fmt.Errorf("the audit key from %s has fingerprint sha256:%s, but sha256:%s is pinned: "+
			"the key was replaced, or the pin is wrong; a trail signed by that key is not trusted", source, got, pin)
	}
	return nil
}
