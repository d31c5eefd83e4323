package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/posture"
)

// TestCheckFixCreatesBuckets: on a first deployment `check` names the
// missing buckets and the command that creates them; `check --fix` creates
// them, the audit bucket with Object Lock (only possible at creation).
func TestCheckFixCreatesBuckets(t *testing.T) {
	base := testenv.S3(t) // endpoint and keys; the buckets below do not exist yet
	files, logs := base, base
	files.Bucket, logs.Bucket = testenv.BucketName(t), testenv.BucketName(t)
	c := testenv.Client(t, base)
	t.Cleanup(func() {
		for _, b := range []string{files.Bucket, logs.Bucket} {
			if err := testenv.RemoveBucket(context.Background(), c, b); err != nil {
				t.Errorf("remove %s: %v", b, err)
			}
		}
	})
	targets := []posture.Target{
		{Storage: "files", Type: "s3", S3: files, Files: true},
		{Storage: "logs", Type: "s3", S3: logs, Audit: true},
	}
	ctx := context.Background()
	rs := posture.Run(ctx, targets, posture.Options{})
	missing := 0
	for _, r := range rs {
		if r.Check == "audit bucket separate" {
			continue // compares block names only; no request
		}
		missing++
		if r.Check != "bucket exists" || r.Status != posture.Fail || !strings.Contains(r.Fix, "aws s3api create-bucket --bucket "+r.Bucket) {
			t.Errorf("without --fix: %+v", r)
		}
		if r.Storage == "logs" && !strings.Contains(r.Fix, "--object-lock-enabled-for-bucket") {
			t.Errorf("audit bucket fix without Object Lock: %s", r.Fix)
		}
	}
	if missing != 2 {
		t.Errorf("%d rows for the missing buckets, want 2: %+v", missing, rs)
	}
	rs = posture.Run(ctx, targets, posture.Options{Fix: true})
	created := 0
	for _, r := range rs {
		if r.Check == "bucket exists" && r.Status == posture.Fixed {
			created++
		}
	}
	if created != 2 {
		t.Fatalf("--fix created %d buckets, want 2:\n%+v", created, rs)
	}
	lock, err := c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &logs.Bucket})
	if err != nil || lock.ObjectLockConfiguration == nil || lock.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		t.Errorf("audit bucket without Object Lock: %v %+v", err, lock)
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &files.Bucket}); err != nil {
		t.Errorf("files bucket: %v", err)
	}
}
