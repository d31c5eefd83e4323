// Package onboard builds the invitation bundle an operator hands to a new
// applicant: a fresh key pair in OpenSSH and PuTTY formats, a FileZilla site
// definition, the gateway's host keys (known_hosts and fingerprints) and a
// short instruction sheet. Only the public key goes into the users file;
// the private key exists nowhere but in the bundle.
package onboard

import (
	"archive/zip"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/vfs"
)

// Options describe one bundle.
type Options struct {
	User      string             // account name
	Key       ed25519.PrivateKey // the applicant's new key
	HostKeys  []ssh.PublicKey    // the gateway's host keys
	Host      string             // name or address applicants connect to
	Port      int                // 0: 22
	ExpiresAt time.Time          // zero: never
	Limits    vfs.Limits         // shown on the sheet when set
	// KeyfilePath is the FileZilla site's key file. FileZilla wants an
	// absolute path, which only the applicant knows; the default "key.ppk"
	// is the file to pick in the Site Manager after importing.
	KeyfilePath string
	// SiteName names the FileZilla site; default "Document upload (HOST)".
	SiteName string
}

// File is one file of the bundle.
type File struct {
	Name string
	Data []byte
	Mode fs.FileMode
}

// The bundle's file names.
const (
	FileKey        = "key"
	FileKeyPub     = "key.pub"
	FilePPK        = "key.ppk"
	FileFileZilla  = "filezilla-site.xml"
	FileKnownHosts = "known_hosts"
	FileReadme     = "README.txt"
)

func (o *Options) check() error {
	if o.User == "" {
		return errors.New("onboard: no user name")
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return errors.New("onboard: no ed25519 key")
	}
	if len(o.HostKeys) == 0 {
		return errors.New("onboard: no host key: the bundle must let the applicant verify the server")
	}
	if o.Host == "" || strings.ContainsAny(o.Host, " \t\r\n/[]@,") {
		return fmt.Errorf("onboard: %q is not a host name or address applicants can connect to", o.Host)
	}
	if ip := net.ParseIP(o.Host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("onboard: %s is a listen address, not one to connect to; give --host", o.Host)
	}
	if o.Port == 0 {
		o.Port = 22
	}
	if o.Port < 1 || o.Port > 65535 {
		return fmt.Errorf("onboard: port %d out of range", o.Port)
	}
	if o.KeyfilePath == "" {
		o.KeyfilePath = FilePPK
	}
	if o.SiteName == "" {
		o.SiteName = "Document upload (" + o.Host + ")"
	}
	return nil
}

// NewKey generates the applicant's key pair.
func NewKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// AuthorizedKey is the public half as an authorized_keys line.
func AuthorizedKey(priv ed25519.PrivateKey, comment string) (string, error) {
	pk, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if c := oneLine(comment); c != "" {
		line += " " + c
	}
	return line, nil
}

// Build renders every file of the bundle.
func Build(o Options) ([]File, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	comment := o.User + "@" + o.Host
	blk, err := ssh.MarshalPrivateKey(o.Key, comment)
	if err != nil {
		return nil, err
	}
	pub, err := AuthorizedKey(o.Key, comment)
	if err != nil {
		return nil, err
	}
	fz, err := FileZillaSite(o)
	if err != nil {
		return nil, err
	}
	return []File{
		{Name: FileReadme, Data: Readme(o), Mode: 0o644},
		{Name: FileKey, Data: pem.EncodeToMemory(blk), Mode: 0o600},
		{Name: FileKeyPub, Data: []byte(pub + "\n"), Mode: 0o644},
		{Name: FilePPK, Data: PPK(o.Key, comment), Mode: 0o600},
		{Name: FileFileZilla, Data: fz, Mode: 0o644},
		{Name: FileKnownHosts, Data: KnownHosts(o.Host, o.Port, o.HostKeys), Mode: 0o644},
	}, nil
}

// hostPattern is how OpenSSH names host:port in known_hosts.
func hostPattern(host string, port int) string {
	if port == 22 || port == 0 {
		return host
	}
	return "[" + host + "]:" + strconv.Itoa(port)
}

// KnownHosts renders a known_hosts file for the gateway, with each key's
// SHA256 fingerprint as a comment for people comparing by eye.
func KnownHosts(host string, port int, keys []ssh.PublicKey) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Host key(s) of the upload server %s, port %d.\n", host, port)
	for _, k := range keys {
		fmt.Fprintf(&b, "# %s %s\n", k.Type(), ssh.FingerprintSHA256(k))
		fmt.Fprintf(&b, "%s %s", hostPattern(host, port), ssh.MarshalAuthorizedKey(k))
	}
	return b.Bytes()
}

// ReadHostKeys reads the gateway's host keys from its key files: an
// OpenSSH private key (what the gateway loads) or a public key (.pub, or
// the file next to an unreadable private key).
func ReadHostKeys(paths ...string) ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	for _, p := range paths {
		k, err := readHostKey(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("no host key file given")
	}
	return out, nil
}

func readHostKey(p string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(p)
	if err == nil {
		if k, _, _, _, perr := ssh.ParseAuthorizedKey(data); perr == nil {
			return k, nil
		}
		if s, perr := ssh.ParsePrivateKey(data); perr == nil {
			return s.PublicKey(), nil
		}
	}
	// The private key may be readable by the gateway only: the .pub the
	// gateway writes beside it is enough.
	if pubData, perr := os.ReadFile(p + ".pub"); perr == nil {
		k, _, _, _, kerr := ssh.ParseAuthorizedKey(pubData)
		if kerr != nil {
			return nil, fmt.Errorf("host key %s.pub: %v", p, kerr)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("host key: %w (and no readable %s.pub)", err, p)
	}
	return nil, fmt.Errorf("host key %s: not an unencrypted OpenSSH private key or a public key", p)
}

// WriteDir writes the bundle into dir, which must not exist yet: a bundle
// is never merged into, or written over, another one.
func WriteDir(dir string, files []File) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; choose another --out", dir)
		}
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, f.Mode); err != nil {
			os.RemoveAll(dir) // created above: no half bundle (or stray key) stays
			return err
		}
	}
	return nil
}

// WriteZip writes the bundle as a zip whose entries sit in folder root.
func WriteZip(w io.Writer, root string, files []File) error {
	zw := zip.NewWriter(w)
	mod := time.Now()
	for _, f := range files {
		h := &zip.FileHeader{Name: root + "/" + f.Name, Method: zip.Deflate, Modified: mod}
		h.SetMode(f.Mode)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := fw.Write(f.Data); err != nil {
			return err
		}
	}
	return zw.Close()
}
