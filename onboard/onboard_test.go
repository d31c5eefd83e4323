package onboard

import (
	"archive/zip"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"encoding/xml"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/vfs"
)

func hostKey(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

func testOptions(t *testing.T) (Options, ssh.Signer) {
	hk, _ := hostKey(t)
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return Options{User: "u7k2q", Key: k, HostKeys: []ssh.PublicKey{hk.PublicKey()}, Host: "files.example.org",
		Port: 2222, ExpiresAt: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC),
		Limits: vfs.Limits{MaxFileSize: 50 << 20, QuotaBytes: 200 << 20, QuotaFiles: 50, AllowedTypes: []string{"pdf", "jpeg"}}}, hk
}

func byName(files []File) map[string]File {
	m := map[string]File{}
	for _, f := range files {
		m[f.Name] = f
	}
	return m
}

func TestBuild(t *testing.T) {
	o, hk := testOptions(t)
	files, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(files)
	if len(m) != 6 {
		t.Fatalf("files: %v", m)
	}
	// The OpenSSH key is the applicant's key, and private files are 0600.
	signer, err := ssh.ParsePrivateKey(m[FileKey].Data)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ssh.NewPublicKey(o.Key.Public())
	if !bytes.Equal(signer.PublicKey().Marshal(), want.Marshal()) {
		t.Error("key file holds another key")
	}
	if m[FileKey].Mode != 0o600 || m[FilePPK].Mode != 0o600 {
		t.Errorf("private key modes %v %v", m[FileKey].Mode, m[FilePPK].Mode)
	}
	if !bytes.Equal(m[FilePPK].Data, PPK(o.Key, "u7k2q@files.example.org")) {
		t.Error("ppk is not the same key")
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(m[FileKeyPub].Data)
	if err != nil || !bytes.Equal(pub.Marshal(), want.Marshal()) {
		t.Errorf("key.pub: %v", err)
	}

	// known_hosts: OpenSSH's own parser accepts the host key for
	// [host]:port and rejects any other key.
	khPath := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(khPath, m[FileKnownHosts].Data, 0o644)
	cb, err := knownhosts.New(khPath)
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 2222}
	if err := cb("files.example.org:2222", addr, hk.PublicKey()); err != nil {
		t.Errorf("known_hosts refuses the host key: %v", err)
	}
	other, _ := hostKey(t)
	if err := cb("files.example.org:2222", addr, other.PublicKey()); err == nil {
		t.Error("known_hosts accepts another key")
	}
	if err := cb("files.example.org:22", addr, hk.PublicKey()); err == nil {
		t.Error("known_hosts entry matches another port")
	}

	// FileZilla site.
	var fz struct {
		XMLName xml.Name `xml:"FileZilla3"`
		Servers []struct {
			Host, User, Keyfile, Name string
			Port, Protocol, Logontype int
		} `xml:"Servers>Server"`
	}
	if err := xml.Unmarshal(m[FileFileZilla].Data, &fz); err != nil {
		t.Fatal(err)
	}
	if len(fz.Servers) != 1 {
		t.Fatalf("servers: %+v", fz)
	}
	s := fz.Servers[0]
	if s.Host != "files.example.org" || s.Port != 2222 || s.Protocol != 1 || s.User != "u7k2q" || s.Logontype != 5 ||
		s.Keyfile != "key.ppk" || s.Name != "Document upload (files.example.org)" {
		t.Errorf("site %+v", s)
	}

	// The sheet names everything the applicant has to type or compare.
	readme := string(m[FileReadme].Data)
	for _, want := range []string{"u7k2q", "files.example.org", "2222", ssh.FingerprintSHA256(hk.PublicKey()),
		"1 August 2026, 12:00 UTC", "does NOT keep a copy", "At most 50 MiB per file", "At most 50 files and 200 MiB in total",
		"PDF (.pdf), JPEG images (.jpg, .jpeg)", "File > Import", "Key file",
		"sftp -i key -o IdentitiesOnly=yes -o UserKnownHostsFile=known_hosts -o StrictHostKeyChecking=yes -P 2222 u7k2q@files.example.org",
		"psftp -i key.ppk -P 2222 u7k2q@files.example.org"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README lacks %q:\n%s", want, readme)
		}
	}
	if strings.Contains(readme, "PRIVATE KEY") || strings.Contains(readme, "<no value>") {
		t.Errorf("README:\n%s", readme)
	}
}

func TestBuildPort22AndNoLimits(t *testing.T) {
	o, hk := testOptions(t)
	o.Port, o.Limits, o.ExpiresAt = 0, vfs.Limits{}, time.Time{}
	files, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(files)
	if !strings.Contains(string(m[FileKnownHosts].Data), "\nfiles.example.org "+hk.PublicKey().Type()) {
		t.Errorf("port 22 entry:\n%s", m[FileKnownHosts].Data)
	}
	readme := string(m[FileReadme].Data)
	if strings.Contains(readme, "WHAT YOU CAN UPLOAD") || strings.Contains(readme, "Valid until") {
		t.Errorf("sheet mentions limits or expiry that do not exist:\n%s", readme)
	}
}

func TestBuildRefuses(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"no host keys":  func(o *Options) { o.HostKeys = nil },
		"listen addr":   func(o *Options) { o.Host = "0.0.0.0" },
		"empty host":    func(o *Options) { o.Host = "" },
		"host with @":   func(o *Options) { o.Host = "a@b" },
		"bad port":      func(o *Options) { o.Port = 70000 },
		"no key":        func(o *Options) { o.Key = nil },
		"no user":       func(o *Options) { o.User = "" },
		"ipv6 brackets": func(o *Options) { o.Host = "[::1]" },
	} {
		o, _ := testOptions(t)
		mod(&o)
		if _, err := Build(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWriteDirAndZip(t *testing.T) {
	o, _ := testOptions(t)
	files, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "invite-u7k2q")
	if err := WriteDir(dir, files); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileKey))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	if err := WriteDir(dir, files); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second write into the same dir: %v", err)
	}
	var buf bytes.Buffer
	if err := WriteZip(&buf, "invite-u7k2q", files); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != len(files) {
		t.Fatalf("%d zip entries", len(zr.File))
	}
	for _, zf := range zr.File {
		if !strings.HasPrefix(zf.Name, "invite-u7k2q/") {
			t.Errorf("entry %s outside the folder", zf.Name)
		}
		if zf.Name == "invite-u7k2q/key" && zf.Mode().Perm() != 0o600 {
			t.Errorf("zip key mode %v", zf.Mode())
		}
	}
}

func TestReadHostKeys(t *testing.T) {
	dir := t.TempDir()
	hk, priv := hostKey(t)
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	privPath := filepath.Join(dir, "ssh_host_ed25519_key")
	os.WriteFile(privPath, pem.EncodeToMemory(blk), 0o600)
	pubOnly := filepath.Join(dir, "other_key")
	os.WriteFile(pubOnly+".pub", ssh.MarshalAuthorizedKey(hk.PublicKey()), 0o644)
	for _, p := range []string{privPath, pubOnly, pubOnly + ".pub"} {
		keys, err := ReadHostKeys(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !bytes.Equal(keys[0].Marshal(), hk.PublicKey().Marshal()) {
			t.Errorf("%s: wrong key", p)
		}
	}
	os.WriteFile(filepath.Join(dir, "junk"), []byte("not a key"), 0o600)
	for _, p := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "junk")} {
		if _, err := ReadHostKeys(p); err == nil {
			t.Errorf("%s accepted", p)
		}
	}
	if _, err := ReadHostKeys(); err == nil {
		t.Error("no paths accepted")
	}
}

func TestInvite(t *testing.T) {
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.hcl")
	o, _ := testOptions(t)
	o.User, o.Key = "", nil
	exp := time.Now().Add(14 * 24 * time.Hour).UTC().Truncate(time.Second)
	u, files, err := Invite(InviteOptions{UsersFile: usersFile, Role: "applicant", ExpiresAt: exp, Bundle: o})
	if err != nil {
		t.Fatal(err)
	}
	if err := authn.ValidateName(u.Name); err != nil || !strings.HasPrefix(u.Name, "u") {
		t.Errorf("name %q: %v", u.Name, err)
	}
	set, err := authn.LoadUsers(usersFile)
	if err != nil {
		t.Fatal(err)
	}
	stored, ok := set.Lookup(u.Name)
	if !ok || stored.Role != "applicant" || !stored.ExpiresAt.Equal(exp) || len(stored.Keys) != 1 || stored.TOTPSecret != "" {
		t.Fatalf("stored user %+v", stored)
	}
	signer, err := ssh.ParsePrivateKey(byName(files)[FileKey].Data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := stored.FindKey(signer.PublicKey()); !ok {
		t.Error("the bundle's key is not the user's key")
	}
	readme := string(byName(files)[FileReadme].Data)
	if !strings.Contains(readme, u.Name) || !strings.Contains(readme, "Valid until:   "+exp.Format("2 January 2006, 15:04 UTC")) {
		t.Errorf("README does not name the account or its expiry:\n%s", readme)
	}
	// Nothing private is on the server side.
	data, _ := os.ReadFile(usersFile)
	if bytes.Contains(data, []byte("PRIVATE")) || bytes.Contains(data, []byte("PuTTY")) {
		t.Errorf("users file holds private material:\n%s", data)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files beside the users file: %v", entries)
	}

	// A bad bundle is refused before the users file changes.
	o.Host = ""
	if _, _, err := Invite(InviteOptions{UsersFile: usersFile, Role: "applicant", Bundle: o}); err == nil {
		t.Fatal("invite without host accepted")
	}
	set, _ = authn.LoadUsers(usersFile)
	if set.Len() != 1 {
		t.Errorf("%d users after a refused invite", set.Len())
	}
}
