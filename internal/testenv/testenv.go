// Package testenv gives integration tests an S3 to talk to: a fresh bucket
// on the shared MinIO that `make test` starts (S3), or a private MinIO
// process a test may stop and restart (StartMinIO).
//
// Without MinIO the tests skip, unless SFTPGW_REQUIRE_INTEGRATION=1 (CI),
// where a missing MinIO is a failure rather than a silent pass.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// Environment variables set by `make test` (see scripts/minio.sh).
const (
	EnvEndpoint  = "SFTPGW_TEST_S3_ENDPOINT"
	EnvAccessKey = "SFTPGW_TEST_S3_ACCESS_KEY"
	EnvSecretKey = "SFTPGW_TEST_S3_SECRET_KEY"
	EnvMinIOBin  = "SFTPGW_MINIO_BIN"
	EnvRequire   = "SFTPGW_REQUIRE_INTEGRATION"
)

const region = "us-east-1"

// unavailable skips the test, or fails it when integration is required.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg + " [" + EnvRequire + "=1]")
	}
	t.Skip(msg)
}

// S3 creates a fresh bucket on the shared MinIO for this test and returns a
// Config for it (SSE AES256, path style, us-east-1). The bucket and
// everything in it, pending multipart uploads included, is removed when
// the test ends.
func S3(t testing.TB) s3store.Config {
	t.Helper()
	endpoint := os.Getenv(EnvEndpoint)
	ak, sk := os.Getenv(EnvAccessKey), os.Getenv(EnvSecretKey)
	if endpoint == "" || ak == "" || sk == "" {
		unavailable(t, "integration: no MinIO (set by make test; run 'make test')")
	}
	cfg := s3store.Config{
		Bucket:          BucketName(t),
		Region:          region,
		Endpoint:        endpoint,
		PathStyle:       true,
		SSE:             s3store.SSEAES256,
		AccessKeyID:     ak,
		SecretAccessKey: sk,
	}
	CreateBucket(t, cfg)
	return cfg
}

// Client returns a raw SDK client for cfg, for assertions the Store
// interface does not expose (SSE headers, pending multipart uploads).
func Client(t testing.TB, cfg s3store.Config) *s3.Client {
	t.Helper()
	c, err := s3store.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatalf("testenv: S3 client: %v", err)
	}
	return c
}

// BucketName derives a valid, unique bucket name from the test name:
// lowercase letters, digits and '-', at most 63 characters.
func BucketName(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t-")
	dash := true
	for _, r := range strings.ToLower(t.Name()) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 63-13 {
			break
		}
	}
	if !dash {
		b.WriteByte('-')
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	b.WriteString(hex.EncodeToString(rnd[:])) // 12 chars, keeps names unique
	return b.String()
}

// CreateBucket creates cfg.Bucket (if needed) and registers its removal.
func CreateBucket(t testing.TB, cfg s3store.Config) {
	t.Helper()
	c := createBucket(t, cfg)
	t.Cleanup(func() {
		if err := RemoveBucket(context.Background(), c, cfg.Bucket); err != nil {
			t.Errorf("testenv: remove bucket %s: %v", cfg.Bucket, err)
		}
	})
}

func createBucket(t testing.TB, cfg s3store.Config) *s3.Client {
	t.Helper()
	c := Client(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &cfg.Bucket})
	var api smithy.APIError
	if err != nil && !(errors.As(err, &api) && api.ErrorCode() == "BucketAlreadyOwnedByYou") {
		t.Fatalf("testenv: create bucket %s: %v", cfg.Bucket, err)
	}
	return c
}

// RemoveBucket deletes every object version, delete marker and pending
// multipart upload in bucket, then the bucket. A missing bucket is fine.
func RemoveBucket(ctx context.Context, c *s3.Client, bucket string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 16)
	)
	do := func(f func() error) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	// Uploads first: their parts are invisible to version listings.
	up := s3.NewListMultipartUploadsPaginator(c, &s3.ListMultipartUploadsInput{Bucket: &bucket})
	for up.HasMorePages() {
		page, err := up.NextPage(ctx)
		if err != nil {
			return ignoreNoBucket(err)
		}
		for _, u := range page.Uploads {
			do(func() error {
				_, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: u.Key, UploadId: u.UploadId})
				return err
			})
		}
	}
	// One delete per object: DeleteObjects needs a checksum some S3
	// clones reject, and test buckets are small.
	del := func(key, version *string) {
		do(func() error {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: key, VersionId: version})
			return err
		})
	}
	vp := s3.NewListObjectVersionsPaginator(c, &s3.ListObjectVersionsInput{Bucket: &bucket})
	for vp.HasMorePages() {
		page, err := vp.NextPage(ctx)
		if err != nil {
			return ignoreNoBucket(err)
		}
		for _, v := range page.Versions {
			del(v.Key, v.VersionId)
		}
		for _, m := range page.DeleteMarkers {
			del(m.Key, m.VersionId)
		}
	}
	wg.Wait()
	if first != nil {
		return first
	}
	_, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
	return ignoreNoBucket(err)
}

func ignoreNoBucket(err error) error {
	var nb *types.NoSuchBucket
	var api smithy.APIError
	if err == nil || errors.As(err, &nb) || (errors.As(err, &api) && api.ErrorCode() == "NoSuchBucket") {
		return nil
	}
	return err
}

// PendingUploads lists the multipart uploads still open in bucket whose key
// starts with prefix. The filtering is ours: MinIO treats a
// ListMultipartUploads prefix as an exact key.
func PendingUploads(t testing.TB, c *s3.Client, bucket, prefix string) []types.MultipartUpload {
	t.Helper()
	var ups []types.MultipartUpload
	p := s3.NewListMultipartUploadsPaginator(c, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("testenv: list multipart uploads: %v", err)
		}
		for _, u := range page.Uploads {
			if strings.HasPrefix(aws.ToString(u.Key), prefix) {
				ups = append(ups, u)
			}
		}
	}
	return ups
}
