package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/alerts"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/posture"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// statuses maps "storage/check" to its status.
func statuses(rs []posture.Result) map[string]posture.Status {
	m := map[string]posture.Status{}
	for _, r := range rs {
		m[r.Storage+"/"+r.Check] = r.Status
	}
	return m
}

func expectStatuses(t *testing.T, rs []posture.Result, want map[string]posture.Status) {
	t.Helper()
	got := statuses(rs)
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d results, want %d: %v", len(got), len(want), got)
	}
	if t.Failed() {
		var b strings.Builder
		posture.Print(&b, rs)
		t.Log("\n" + b.String())
	}
}

// TestPostureCheckAndFix: fresh MinIO buckets fail the checks MinIO
// supports, --fix repairs them without dropping other policy statements,
// and what MinIO lacks is reported as unsupported, not passed.
func TestPostureCheckAndFix(t *testing.T) {
	files, logs := testenv.S3(t), testenv.S3(t)
	ctx := context.Background()
	c := testenv.Client(t, files)
	// An operator's own statement must survive --fix.
	own := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"KeepMe","Effect":"Deny","Principal":"*","Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::%s"}]}`, files.Bucket)
	if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: &files.Bucket, Policy: &own}); err != nil {
		t.Fatal(err)
	}
	targets := []posture.Target{
		{Storage: "files", Type: "s3", S3: files, Retention: 24 * time.Hour, Files: true},
		{Storage: "logs", Type: "s3", S3: logs, Audit: true},
		{Storage: "scratch", Type: "local", Root: t.TempDir()},
	}
	const (
		pass, fail, fixed, unsup, skip = posture.Pass, posture.Fail, posture.Fixed, posture.Unsupported, posture.Skipped
	)
	common := func(st string, versioning, enc, sse posture.Status) map[string]posture.Status {
		return map[string]posture.Status{
			st + "/endpoint TLS": pass, st + "/versioning": versioning, st + "/default encryption": enc,
			st + "/public access block": unsup, st + "/no public ACL": pass, st + "/policy not public": pass,
			st + "/policy: TLS only": unsup, st + "/policy: deny unencrypted uploads": sse,
		}
	}
	want := func(versioning, enc, sse, expire posture.Status) map[string]posture.Status {
		m := common("files", versioning, enc, sse)
		for k, v := range common("logs", versioning, enc, sse) {
			m[k] = v
		}
		m["files/MFA delete"] = unsup
		m["files/lifecycle expiration"] = expire
		m["files/lifecycle aborts uploads"] = unsup // every bucket, retention or not
		m["logs/lifecycle aborts uploads"] = unsup
		m["scratch/posture"] = skip
		m["logs/audit bucket separate"] = pass
		m["logs/audit object lock"] = skip // neither strict nor object_lock_retention
		return m
	}

	start := time.Now()
	rs := posture.Run(ctx, targets, posture.Options{})
	t.Logf("check of 2 buckets took %s", time.Since(start))
	expectStatuses(t, rs, want(fail, fail, fail, fail))
	if n := posture.Failures(rs, false); n != 7 {
		t.Errorf("%d failures, want 7", n)
	}
	for _, r := range rs {
		if r.Status == posture.Fail && r.Fix == "" {
			t.Errorf("%s/%s fails without saying how to fix it", r.Storage, r.Check)
		}
	}

	rs = posture.Run(ctx, targets, posture.Options{Fix: true})
	expectStatuses(t, rs, want(fixed, fixed, fixed, fixed))
	if n := posture.Failures(rs, false); n != 0 {
		t.Errorf("%d failures after --fix", n)
	}
	rs = posture.Run(ctx, targets, posture.Options{})
	expectStatuses(t, rs, want(pass, pass, pass, pass))
	if posture.Failures(rs, false) != 0 || posture.Failures(rs, true) == 0 {
		t.Errorf("failures %d, strict %d", posture.Failures(rs, false), posture.Failures(rs, true))
	}

	// What --fix did, seen with the raw API.
	v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &files.Bucket})
	if err != nil || v.Status != types.BucketVersioningStatusEnabled {
		t.Errorf("versioning %v %v", v.Status, err)
	}
	pol, err := c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: &files.Bucket})
	if err != nil || !strings.Contains(*pol.Policy, "KeepMe") || !strings.Contains(*pol.Policy, "SftpgwDenyUnencryptedUploads") {
		t.Errorf("policy after fix: %v %v", aws.ToString(pol.Policy), err)
	}
	lc, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &files.Bucket})
	if err != nil || len(lc.Rules) != 1 || aws.ToInt32(lc.Rules[0].Expiration.Days) != 1 {
		t.Errorf("lifecycle after fix: %+v %v", lc, err)
	}
	// The gateway still writes (with SSE) after the fix.
	st, err := s3store.New(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	writeObject(t, st, "after-fix", []byte("still writable"))
	assertSSE(t, c, files.Bucket, "after-fix")

	// A public policy and a shared audit bucket are caught.
	lc2 := testenv.Client(t, logs)
	public := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"Open","Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%s/*"]}]}`, logs.Bucket)
	if _, err := lc2.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: &logs.Bucket, Policy: &public}); err != nil {
		t.Fatal(err)
	}
	shared := []posture.Target{targets[0], {Storage: "logs", Type: "s3", S3: files, Audit: true}, {Storage: "pub", Type: "s3", S3: logs}}
	got := statuses(posture.Run(ctx, shared, posture.Options{}))
	if got["pub/policy not public"] != fail || got["logs/audit bucket separate"] != fail {
		t.Errorf("public policy or shared audit bucket not caught: %v", got)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// sftpgwBin is the gateway binary: $SFTPGW_BIN (make test builds it) or a
// fresh build.
func sftpgwBin(t *testing.T) string {
	if b := os.Getenv("SFTPGW_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sftpgw-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sftpgw")
		out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/sftpgw").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// TestCheckCommand runs `sftpgw check` as an operator would: it fails on a
// fresh bucket, --fix repairs it, --strict still fails on what MinIO
// cannot do, and `serve` with strict = true refuses to start on a bad bucket.
func TestCheckCommand(t *testing.T) {
	files, logs := testenv.S3(t), testenv.S3(t)
	bin := sftpgwBin(t)
	dir := t.TempDir()
	// serve stops first on a missing users file; this test is about buckets.
	if err := authn.SaveUsers(filepath.Join(dir, "users.hcl"), authn.NewUserSet()); err != nil {
		t.Fatal(err)
	}
	cfgFor := func(strict bool, filesBucket string) string {
		p := filepath.Join(dir, fmt.Sprintf("cfg-%v-%s.hcl", strict, filesBucket))
		src := fmt.Sprintf(`users_file = "users.hcl"
listen = "127.0.0.1:0"
strict = %v
storage "files" {
  type = "s3"
  bucket = %q
  endpoint = %q
  path_style = true
  retention = "24h"
}
storage "logs" {
  type = "s3"
  bucket = %q
  endpoint = %q
  path_style = true
}
role "applicant" {
  storage = "files"
  home = "user/{name}/"
  permissions = ["upload"]
}
audit {
  storage = "logs"
}
`, strict, filesBucket, files.Endpoint, logs.Bucket, logs.Endpoint)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := append(os.Environ(), "AWS_ACCESS_KEY_ID="+files.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+files.SecretAccessKey,
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true")
	run := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env, cmd.Dir = env, dir
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	cfg := cfgFor(false, files.Bucket)
	out, code := run("check", "--config", cfg)
	if code == 0 {
		t.Errorf("check passed a fresh bucket:\n%s", out)
	}
	mustContain(t, out, "versioning", "FAIL", "fix: aws s3api put-bucket-versioning", "unsupported by endpoint", "failed")
	if strings.Contains(out, files.SecretAccessKey) {
		t.Error("check printed the secret key")
	}

	// serve with strict = true refuses to start on that bucket.
	out, code = run("serve", "--config", cfgFor(true, files.Bucket))
	if code == 0 || !strings.Contains(out, "refusing to start") {
		t.Errorf("strict serve: exit %d\n%s", code, out)
	}

	out, code = run("check", "--config", cfg, "--fix")
	if code != 0 {
		t.Errorf("check --fix: exit %d\n%s", code, out)
	}
	mustContain(t, out, "fixed")
	out, code = run("check", "--config", cfg)
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Errorf("check after --fix: exit %d\n%s", code, out)
	}
	t.Logf("after --fix:\n%s", out)
	// Every bucket fixed, but the audit bucket has no Object Lock (MinIO
	// enables it only at creation): strict still refuses, for that alone.
	out, code = run("serve", "--config", cfgFor(true, files.Bucket))
	if code == 0 || !strings.Contains(out, "refusing to start: 1 bucket posture check(s) failed") ||
		!strings.Contains(out, "audit object lock") {
		t.Errorf("strict serve, audit bucket without Object Lock: exit %d\n%s", code, out)
	}
	if _, code = run("check", "--config", cfg, "--strict"); code == 0 {
		t.Error("--strict passed although MinIO lacks MFA delete and the public access block")
	}
}

// TestServeRunsRetentionAndAlerts starts the real binary: its sweeper
// removes an expired object from the file bucket only, and the removal
// reaches the configured webhook, signed with the secret from the
// environment.
func TestServeRunsRetentionAndAlerts(t *testing.T) {
	files, logs := testenv.S3(t), testenv.S3(t)
	bin := sftpgwBin(t)
	dir := t.TempDir()
	recv, url := newHookReceiver(t, "serve-hook-secret")
	if err := authn.SaveUsers(filepath.Join(dir, "users.hcl"), authn.NewUserSet()); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sftpgw.hcl")
	src := fmt.Sprintf(`users_file = "users.hcl"
listen = "127.0.0.1:0"
host_keys = ["host_key"]
storage "files" {
  type = "s3"
  bucket = %q
  endpoint = %q
  path_style = true
  retention = "2s"
}
storage "logs" {
  type = "s3"
  bucket = %q
  endpoint = %q
  path_style = true
}
role "applicant" {
  storage = "files"
  home = "user/{name}/"
  permissions = ["upload"]
}
alert "ops" {
  url = %q
  events = ["retention_delete"]
  secret_env = "SFTPGW_TEST_ALERT_SECRET"
}
`, files.Bucket, files.Endpoint, logs.Bucket, logs.Endpoint, url)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	fst, _ := s3store.New(context.Background(), files)
	lst, _ := s3store.New(context.Background(), logs)
	writeObject(t, fst, "user/anna/cv.pdf", []byte("collect me"))
	writeObject(t, lst, "keep.txt", []byte("other bucket"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+files.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+files.SecretAccessKey,
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "SFTPGW_TEST_ALERT_SECRET=serve-hook-secret")
	cmd.Dir = dir
	logbuf := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logbuf, logbuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("gateway log:\n%s", logbuf.String())
		}
	}()
	waitFor(t, 20*time.Second, "the retention alert", func() bool { return len(recv.find(alerts.RetentionDelete)) == 1 })
	if p := recv.find(alerts.RetentionDelete)[0]; p.Event.Path != "user/anna/cv.pdf" {
		t.Errorf("alert for %+v", p.Event)
	}
	if storeHas(t, fst, "user/anna/cv.pdf") {
		t.Error("expired object still there")
	}
	if !storeHas(t, lst, "keep.txt") {
		t.Error("the files sweeper touched the logs bucket")
	}
	out := logbuf.String()
	mustContain(t, out, "retention enabled", "bucket posture check failed")
	if strings.Contains(out, "serve-hook-secret") || strings.Contains(out, files.SecretAccessKey) {
		t.Error("a secret reached the log")
	}
}
