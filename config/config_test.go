package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../configs/sftpgw.example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Roles) != 4 || c.Audit == nil || c.Storage["files"].SSE != "AES256" {
		t.Fatalf("unexpected config: %+v", c)
	}
	if c.Roles["applicant"].Perms.Has(vfs.OpDownload) {
		t.Error("applicant may download")
	}
	if c.AllowNonETMMACs {
		t.Error("non-ETM MACs must be off in the example")
	}
	if !c.Roles["hr"].MFA || len(c.Roles["hr"].DownloadFrom) != 1 {
		t.Error("hr must require MFA and restrict downloads")
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	cases := map[string]string{
		`users_file = "u"
storage "s" { type = "ftp" }`: `cfg.hcl:2: storage "s": type must be`,
		`users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "r" {
  storage = "nope"
  home = "x/"
  permissions = ["list"]
}`: `cfg.hcl:6: role "r": storage "nope" is not defined`,
		`users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "r" {
  storage = "s"
  home = "x/"
  permissions = ["fly"]
}`: `unknown permission "fly"`,
		`users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "r" {
  storage = "s"
  home = "/abs"
  permissions = ["list"]
}`: `must be relative`,
		`users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "r" {
  storage = "s"
  home = ""
  permissions = ["list", "delete"]
}
audit { storage = "s" }`: `can modify storage "s", which holds the audit trail`,
		// Two storage blocks, one bucket: the role writes the audit bucket
		// under another name (and another region: still the same bucket).
		`users_file = "u"
storage "files" {
  type = "s3"
  bucket = "shared"
  endpoint = "https://s3.example.com"
}
storage "logs" {
  type = "s3"
  bucket = "shared"
  endpoint = "https://S3.example.com/"
  region = "eu-west-1"
}
role "r" {
  storage = "files"
  home = ""
  permissions = ["upload"]
}
audit { storage = "logs" }`: `role "r" can modify storage "files" (the same bucket as audit storage "logs")`,
		`users_file = "u"
storage "files" {
  type = "local"
  root = "d"
}
storage "logs" {
  type = "local"
  root = "./d/"
}
role "r" {
  storage = "files"
  home = ""
  permissions = ["delete"]
}
audit { storage = "logs" }`: `(the same bucket as audit storage "logs")`,
		`users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "r" {
  storage = "s"
  home = ""
  permissions = ["list"]
}
audit {
  storage = "s"
  pubkey_sha256 = "abc"
}`: `pubkey_sha256: "abc" is not a key fingerprint`,
		`users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "r" {
  storage = "s"
  home = ""
  permissions = ["list"]
}
audit {
  storage = "s"
  object_lock_retention = "30d"
}`: `object_lock_retention needs an s3 storage block`,
		`users_file = "u"
storage "s" {
  type = "s3"
  bucket = "b"
  sse = "none"
}`: `sse must be "AES256" or "aws:kms"`,
		`# comment
users_file = 
`: `cfg.hcl:2`,
		`storage "s" {}`: `users_file`,
	}
	for src, want := range cases {
		_, err := Parse("cfg.hcl", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q:\n got %v\nwant %q", src, err, want)
		}
	}
}

func TestRelativePathsFromConfigDir(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sftpgw.hcl")
	os.WriteFile(p, []byte(`users_file = "users.hcl"
storage "s" {
  type = "local"
  root = "data"
}
role "r" {
  storage = "s"
  home = "{name}/"
  permissions = ["*"]
  download_from = ["10.1.2.3", "192.168.0.0/16"]
}`), 0o600)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.UsersFile != filepath.Join(dir, "users.hcl") || c.Storage["s"].Root != filepath.Join(dir, "data") {
		t.Errorf("paths not relative to config dir: %q %q", c.UsersFile, c.Storage["s"].Root)
	}
	if got := c.Roles["r"].DownloadFrom[0].String(); got != "10.1.2.3/32" {
		t.Errorf("single address: %s", got)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"8MiB": 8 << 20, "1GiB": 1 << 30, "100": 100, "5 MB": 5e6} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "x", "-1", "1.5GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	src, _ := os.ReadFile("../configs/sftpgw.example.hcl")
	f.Add(src)
	f.Add([]byte(`users_file = "u"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Parse("fuzz.hcl", b) // must never panic
	})
}

// TestAuditBucketByLocation: the audit bucket is told apart from file
// buckets by endpoint and bucket name, not by storage block name; the key
// pin and the lock retention are read.
func TestAuditBucketByLocation(t *testing.T) {
	src := `users_file = "u"
storage "files" {
  type = "s3"
  bucket = "shared"
  endpoint = "https://s3.example.com"
}
storage "logs" {
  type = "s3"
  bucket = "shared"
  endpoint = "https://other.example.com"
}
role "r" {
  storage = "files"
  home = ""
  permissions = ["upload"]
}
audit {
  storage = "logs"
  pubkey_sha256 = "SHA256:ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
  object_lock_retention = "400d"
}`
	c, err := Parse("cfg.hcl", []byte(src))
	if err != nil {
		t.Fatalf("same bucket name on another endpoint refused: %v", err)
	}
	if c.Audit.PubKeySHA256 != "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789" {
		t.Errorf("pin %q", c.Audit.PubKeySHA256)
	}
	if c.Audit.LockRetention != 400*24*time.Hour {
		t.Errorf("lock retention %s", c.Audit.LockRetention)
	}
}

func TestLockoutKnobs(t *testing.T) {
	src := `users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "r" {
  storage = "s"
  home = "x/"
  permissions = ["list"]
}
lockout {
  max_ip_failures   = 7
  max_pair_failures = 4
  max_mfa_failures  = 6
  mfa_window        = "20m"
  mfa_lock          = "30m"
  max_mfa_lock      = "2d"
  max_mfa_prompts   = 3
}
`
	c, err := Parse("/etc/sftpgw/cfg.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Lockout
	if l.MaxIPFailures != 7 || l.MaxPairFailures != 4 || l.MaxMFAFailures != 6 || l.MFAWindow != 20*time.Minute ||
		l.MFALock != 30*time.Minute || l.MaxMFALock != 48*time.Hour || l.MaxMFAPrompts != 3 {
		t.Errorf("lockout %+v", l)
	}
	if _, err := Parse("/etc/sftpgw/cfg.hcl", []byte(strings.Replace(src, "max_mfa_prompts   = 3", "max_mfa_prompts = -1", 1))); err == nil ||
		!strings.Contains(err.Error(), "max_mfa_prompts must not be negative") {
		t.Errorf("negative max_mfa_prompts: %v", err)
	}
	if _, err := Parse("/etc/sftpgw/cfg.hcl", []byte(strings.Replace(src, `"30m"`, `"soon"`, 1))); err == nil ||
		!strings.Contains(err.Error(), "mfa_lock") {
		t.Errorf("bad mfa_lock: %v", err)
	}
}

// An s3 block's tuning reaches the store: part size, uploads in flight and
// how many listed objects' times are remembered.
func TestS3StoreTuning(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sftpgw.hcl")
	os.WriteFile(p, []byte(`users_file = "users.hcl"
storage "s" {
  type = "s3"
  bucket = "b"
  part_size = "16MiB"
  upload_concurrency = 3
  mtime_cache = 500000
}
storage "off" {
  type = "s3"
  bucket = "b"
  mtime_cache = -1
}
role "r" {
  storage = "s"
  home = "{name}/"
  permissions = ["*"]
}`), 0o600)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	s, off := c.Storage["s"], c.Storage["off"]
	if got := s.s3Config(); got.PartSize != 16<<20 || got.Concurrency != 3 || got.MTimeCache != 500000 {
		t.Errorf("s3 config %+v", got)
	}
	if got := off.s3Config(); got.MTimeCache != -1 {
		t.Errorf("mtime_cache = -1 gave %d", got.MTimeCache)
	}
}
