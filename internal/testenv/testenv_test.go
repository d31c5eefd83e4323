package testenv_test

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/sftpgw/sftpgw/internal/testenv"
)

var validBucket = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

func TestBucketName(t *testing.T) {
	names := map[string]bool{}
	for _, sub := range []string{"x", "Mixed_Case/and spaces", strings.Repeat("long", 40), "--", "ünï"} {
		t.Run(sub, func(t *testing.T) {
			n := testenv.BucketName(t)
			if !validBucket.MatchString(n) || strings.Contains(n, "--") {
				t.Errorf("bucket name %q is not valid", n)
			}
			if names[n] {
				t.Errorf("bucket name %q repeated", n)
			}
			names[n] = true
		})
	}
}

// RemoveBucket must cope with objects, markers and pending uploads.
func TestRemoveBucket(t *testing.T) {
	cfg := testenv.S3(t)
	c := testenv.Client(t, cfg)
	ctx := t.Context()
	for _, k := range []string{"a", "d/", "d/b"} {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &cfg.Bucket, Key: aws.String(k), Body: bytes.NewReader([]byte(k))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &cfg.Bucket, Key: aws.String("pending")}); err != nil {
		t.Fatal(err)
	}
	if n := len(testenv.PendingUploads(t, c, cfg.Bucket, "pend")); n != 1 {
		t.Fatalf("%d pending uploads; want 1", n)
	}
	if err := testenv.RemoveBucket(ctx, c, cfg.Bucket); err != nil {
		t.Fatal(err)
	}
	_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &cfg.Bucket})
	var api smithy.APIError
	if !errors.As(err, &api) || (api.ErrorCode() != "NotFound" && api.ErrorCode() != "NoSuchBucket") {
		t.Fatalf("bucket still there: %v", err)
	}
	// The t.Cleanup removal finds no bucket, which is fine.
}

func TestStartMinIO(t *testing.T) {
	m := testenv.StartMinIO(t)
	cfg := m.Config("bkt1")
	c := testenv.Client(t, cfg)
	if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &cfg.Bucket, Key: aws.String("k"), Body: bytes.NewReader(nil), ServerSideEncryption: "AES256"}); err != nil {
		t.Fatalf("SSE-S3 put on the private MinIO: %v", err)
	}
	m.Stop()
	m.Stop() // idempotent
	m.Start()
	m.Start() // idempotent
	if _, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: aws.String("k")}); err != nil {
		t.Fatalf("object lost across restart: %v", err)
	}
}
