package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/posture"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// lockedBucket creates a MinIO bucket with Object Lock enabled (possible
// only at creation). Its removal waits until the retention of what the
// test wrote there (until) has passed: compliance mode admits no earlier
// delete, not even by the owner.
func lockedBucket(t *testing.T, until *time.Time) s3store.Config {
	t.Helper()
	cfg := testenv.S3(t) // for the endpoint and credentials; a plain bucket
	cfg.Bucket = testenv.BucketName(t)
	c := testenv.Client(t, cfg)
	ctx := context.Background()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &cfg.Bucket, ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("create bucket with object lock: %v", err)
	}
	t.Cleanup(func() {
		if d := time.Until(*until); d > 0 {
			time.Sleep(d + 100*time.Millisecond) // real time is the point: the lock must expire
		}
		if err := testenv.RemoveBucket(ctx, c, cfg.Bucket); err != nil {
			t.Errorf("remove locked bucket: %v", err)
		}
	})
	return cfg
}

func lockCheck(t *testing.T, cfg s3store.Config, retention time.Duration, require bool) posture.Result {
	t.Helper()
	rs := posture.Run(context.Background(), []posture.Target{{Storage: "logs", Type: "s3", S3: cfg, Audit: true,
		LockRetention: retention, RequireLock: require}}, posture.Options{})
	for _, r := range rs {
		if r.Check == "audit object lock" {
			return r
		}
	}
	t.Fatalf("no audit object lock check in %+v", rs)
	return posture.Result{}
}

func lockTrail(t *testing.T, cfg s3store.Config, spool string, retention time.Duration, log hclog.Logger) (*trail.Trail, ed25519.PublicKey) {
	t.Helper()
	st, err := s3store.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	tr, err := trail.New(trail.Options{Store: st, Prefix: "audit/", Instance: "gw-1", SpoolDir: spool,
		BatchMaxEvents: 2, LockRetention: retention, Key: key, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		tr.Record(audit.Event{Kind: "file", Op: "upload", User: "alice", Path: "/f" + string(rune('a'+i)), Result: "ok"})
	}
	return tr, key.Public().(ed25519.PublicKey)
}

// TestAuditObjectLock: with object_lock_retention every batch lands in
// compliance mode with a retention date, so not even the bucket owner can
// delete it in time; a bucket without Object Lock fails the posture check
// that strict = true enforces, and its uploads are refused, leaving the
// batches in the spool rather than unlocked in the bucket.
func TestAuditObjectLock(t *testing.T) {
	const retention = 3 * time.Second // short: the cleanup waits it out
	ctx := context.Background()

	t.Run("locked bucket", func(t *testing.T) {
		var until time.Time
		cfg := lockedBucket(t, &until)
		if r := lockCheck(t, cfg, retention, true); r.Status != posture.Pass {
			t.Errorf("posture on a locked bucket: %s %s", r.Status, r.Detail)
		}
		if r := lockCheck(t, cfg, 0, true); r.Status != posture.Fail || !strings.Contains(r.Detail, "object_lock_retention is not set") {
			t.Errorf("strict without object_lock_retention: %s %s", r.Status, r.Detail)
		}
		before := time.Now()
		until = before.Add(retention + 5*time.Second) // until Close returns, refined below
		tr, pub := lockTrail(t, cfg, t.TempDir(), retention, hclog.NewNullLogger())
		if err := tr.Close(ctx); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		until = after.Add(retention)
		st, _ := s3store.New(ctx, cfg)
		_, keys := trailEvents(t, st)
		if len(keys) != 3 {
			t.Fatalf("%d batches, want 3 (5 events, 2 per batch)", len(keys))
		}
		c := testenv.Client(t, cfg)
		for _, k := range keys {
			r, err := c.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: &cfg.Bucket, Key: aws.String(k)})
			if err != nil {
				t.Fatalf("%s: retention: %v", k, err)
			}
			ru := aws.ToTime(r.Retention.RetainUntilDate)
			// The date is upload time + retention; S3 keeps it to the second.
			if r.Retention.Mode != types.ObjectLockRetentionModeCompliance ||
				ru.Before(before.Add(retention).Add(-time.Second)) || ru.After(after.Add(retention).Add(time.Second)) {
				t.Errorf("%s: retention %s until %s, want COMPLIANCE until %s..%s", k, r.Retention.Mode, ru,
					before.Add(retention), after.Add(retention))
			}
			h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: aws.String(k)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &cfg.Bucket, Key: aws.String(k), VersionId: h.VersionId}); err == nil {
				t.Errorf("%s: the owner deleted a locked batch version", k)
			}
		}
		rep, err := trail.Verify(ctx, st, "audit/", pub, time.Time{}, time.Time{})
		if err != nil || !rep.OK() {
			t.Errorf("verify: %v\n%s", err, rep)
		}
	})

	t.Run("bucket without lock", func(t *testing.T) {
		cfg := testenv.S3(t)
		r := lockCheck(t, cfg, retention, true)
		if r.Status != posture.Fail || r.Fix == "" {
			t.Errorf("posture on an unlocked bucket, lock required: %s %s", r.Status, r.Detail)
		}
		if r := lockCheck(t, cfg, 0, false); r.Status != posture.Skipped {
			t.Errorf("posture, lock not required: %s %s", r.Status, r.Detail)
		}
		var logBuf bytes.Buffer
		spool := t.TempDir()
		tr, _ := lockTrail(t, cfg, spool, retention, hclog.New(&hclog.LoggerOptions{Output: &logBuf}))
		if err := tr.Close(ctx); err != nil {
			t.Fatalf("Close lost events: %v", err)
		}
		st, _ := s3store.New(ctx, cfg)
		if _, keys := trailEvents(t, st); len(keys) != 0 {
			t.Errorf("batches stored without a lock: %v", keys)
		}
		ents, _ := os.ReadDir(spool)
		n := 0
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "batch-") {
				n++
			}
		}
		if n != 3 {
			t.Errorf("%d batches kept in the spool %s, want 3", n, filepath.Base(spool))
		}
		t.Logf("store refused the locked upload: %s", firstLine(logBuf.String(), "unavailable"))
	})
}

func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
