package s3store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

// newStore returns a store on a fresh MinIO bucket with the suite's part size.
func newStore(t *testing.T, edit ...func(*s3store.Config)) (*s3store.Store, s3store.Config, *s3.Client) {
	t.Helper()
	cfg := testenv.S3(t)
	cfg.PartSize = storetest.PartSize
	for _, e := range edit {
		e(&cfg)
	}
	s, err := s3store.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, cfg, testenv.Client(t, cfg)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vfs.Store {
		s, _, _ := newStore(t)
		return s
	})
}

func head(t *testing.T, c *s3.Client, bucket, key string) *s3.HeadObjectOutput {
	t.Helper()
	out, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("head %q: %v", key, err)
	}
	return out
}

func noPending(t *testing.T, c *s3.Client, bucket, prefix string) {
	t.Helper()
	if ups := testenv.PendingUploads(t, c, bucket, prefix); len(ups) != 0 {
		t.Fatalf("%d multipart uploads left pending under %q", len(ups), prefix)
	}
}

// Every kind of write must carry SSE.
func TestSSEOnEveryWrite(t *testing.T) {
	for _, kms := range []bool{false, true} {
		t.Run(map[bool]string{false: "AES256", true: "KMS"}[kms], func(t *testing.T) {
			t.Parallel()
			s, cfg, c := newStore(t, func(c *s3store.Config) {
				if kms {
					// scripts/minio.sh and StartMinIO name their KMS key sftpgw-test.
					c.SSE, c.KMSKeyID = s3store.SSEKMS, "sftpgw-test"
				}
			})
			s.SetCopyLimits(1, 5<<20) // every copy goes multipart
			storetest.MustPut(t, s, "plain", []byte("hello"))
			storetest.MustPut(t, s, "empty", nil)
			big := storetest.Data(2*storetest.PartSize + 1)
			storetest.MustPut(t, s, "multi", big)
			storetest.MustPut(t, s, "dir/", nil)
			if err := s.Copy(t.Context(), "multi", "copy-multi"); err != nil {
				t.Fatal(err)
			}
			got, err := storetest.Get(t, s, "copy-multi")
			if err != nil || string(got) != string(big) {
				t.Fatalf("multipart copy content differs (%d bytes, %v)", len(got), err)
			}
			s.SetCopyLimits(5<<30, 512<<20)
			if err := s.Copy(t.Context(), "plain", "copy-plain"); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"plain", "empty", "multi", "dir/", "copy-multi", "copy-plain"} {
				h := head(t, c, cfg.Bucket, k)
				want := types.ServerSideEncryptionAes256
				if kms {
					want = types.ServerSideEncryptionAwsKms
				}
				if h.ServerSideEncryption != want {
					t.Errorf("%s: ServerSideEncryption %q; want %q", k, h.ServerSideEncryption, want)
				}
				if kms && !strings.Contains(aws.ToString(h.SSEKMSKeyId), "sftpgw-test") {
					t.Errorf("%s: SSEKMSKeyId %q; want sftpgw-test", k, aws.ToString(h.SSEKMSKeyId))
				}
			}
			noPending(t, c, cfg.Bucket, "")
		})
	}
}

// A store that cannot encrypt as asked fails the write; nothing is stored
// unencrypted instead.
func TestSSERejected(t *testing.T) {
	s, cfg, c := newStore(t, func(c *s3store.Config) {
		c.SSE, c.KMSKeyID = s3store.SSEKMS, "no-such-key"
	})
	for _, n := range []int{3, storetest.PartSize + 1} {
		err := storetest.Put(t, s, "k", storetest.Data(n), vfs.CreateOptions{SizeHint: -1})
		if err == nil {
			t.Fatalf("%d-byte put with an unknown KMS key succeeded", n)
		}
		if !strings.HasPrefix(err.Error(), "storage error: ") {
			t.Errorf("error text %q", err)
		}
	}
	if _, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: aws.String("k")}); err == nil {
		t.Fatal("object stored despite the SSE failure")
	}
	noPending(t, c, cfg.Bucket, "")
}

func TestAbortMidMultipart(t *testing.T) {
	s, cfg, c := newStore(t)
	up, err := s.Create(t.Context(), "mp", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	up.Write(storetest.Data(3*storetest.PartSize + 10))
	if ups := testenv.PendingUploads(t, c, cfg.Bucket, "mp"); len(ups) != 1 {
		t.Fatalf("%d pending uploads mid-upload; want 1", len(ups))
	}
	if err := up.Abort(t.Context()); err != nil {
		t.Fatal(err)
	}
	noPending(t, c, cfg.Bucket, "")
	if _, err := s.Stat(t.Context(), "mp"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("stat after abort: %v", err)
	}
}

// Cancelling the upload's context mid-multipart fails it and leaves neither
// an object nor a pending upload, with or without a Commit/Abort call.
func TestCancelledUpload(t *testing.T) {
	for _, call := range []string{"commit", "abort", "nothing"} {
		t.Run(call, func(t *testing.T) {
			t.Parallel()
			s, cfg, c := newStore(t)
			ctx, cancel := context.WithCancel(t.Context())
			up, err := s.Create(ctx, "k", vfs.CreateOptions{SizeHint: -1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := up.Write(storetest.Data(2*storetest.PartSize + 1)); err != nil {
				t.Fatal(err)
			}
			cancel()
			// Writes fail promptly once the context is gone.
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err := up.Write(make([]byte, 1<<20))
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("write error %v; want context.Canceled", err)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("writes still accepted 5s after cancel")
				}
			}
			switch call {
			case "commit":
				if err := up.Commit(context.Background()); err == nil {
					t.Fatal("commit of a cancelled upload succeeded")
				}
			case "abort":
				if err := up.Abort(context.Background()); err != nil {
					t.Fatal(err)
				}
			case "nothing":
				// The cleanup runs in the background: poll for it.
				for i := 0; len(testenv.PendingUploads(t, c, cfg.Bucket, "")) > 0; i++ {
					if i > 100 {
						t.Fatal("pending upload not cleaned up 10s after cancel")
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			noPending(t, c, cfg.Bucket, "")
			if _, err := s.Stat(t.Context(), "k"); !errors.Is(err, vfs.ErrNotExist) {
				t.Fatalf("stat: %v; want ErrNotExist", err)
			}
		})
	}
}

// A cancelled Commit context aborts too.
func TestCommitContextCancelled(t *testing.T) {
	s, cfg, c := newStore(t)
	up, _ := s.Create(t.Context(), "k", vfs.CreateOptions{SizeHint: -1})
	up.Write(storetest.Data(storetest.PartSize + 1))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := up.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("commit: %v; want context.Canceled", err)
	}
	noPending(t, c, cfg.Bucket, "")
	if _, err := s.Stat(t.Context(), "k"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("stat: %v", err)
	}
}

func TestExclusiveMultipartLeavesNothing(t *testing.T) {
	s, cfg, c := newStore(t)
	storetest.MustPut(t, s, "k", []byte("original"))
	err := storetest.Put(t, s, "k", storetest.Data(2*storetest.PartSize+1), vfs.CreateOptions{Exclusive: true, SizeHint: -1})
	if !errors.Is(err, vfs.ErrExist) {
		t.Fatalf("exclusive multipart over existing: %v; want ErrExist", err)
	}
	noPending(t, c, cfg.Bucket, "")
	if b, _ := storetest.Get(t, s, "k"); string(b) != "original" {
		t.Fatalf("content replaced: %q", b)
	}
}

// Errors are short, classified, and never carry the secret.
func TestErrorsAreSafe(t *testing.T) {
	_, cfg, _ := newStore(t)
	bad := cfg
	bad.SecretAccessKey = "not-the-secret-" + cfg.SecretAccessKey[:4]
	s, err := s3store.New(t.Context(), bad)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["stat"] = s.Stat(t.Context(), "k")
	_, checks["list"] = s.List(t.Context(), vfs.ListOptions{})
	_, checks["read"] = s.Read(t.Context(), "k", 0, -1)
	checks["put"] = storetest.Put(t, s, "k", []byte("x"), vfs.CreateOptions{SizeHint: -1})
	for op, err := range checks {
		if !errors.Is(err, vfs.ErrPermission) {
			t.Errorf("%s with a wrong secret: %v; want ErrPermission", op, err)
			continue
		}
		msg := err.Error()
		if len(msg) > 80 || !strings.HasPrefix(msg, "storage error: ") ||
			strings.Contains(msg, cfg.SecretAccessKey) || strings.Contains(msg, bad.SecretAccessKey) ||
			strings.Contains(msg, "Signature=") || strings.Contains(msg, cfg.AccessKeyID) {
			t.Errorf("%s: unsafe or long error text %q", op, msg)
		}
		var se *s3store.Error
		if !errors.As(err, &se) || se.Detail() == "" {
			t.Errorf("%s: original error not kept", op)
		}
	}
}

// The environment sets AWS_CA_BUNDLE; config loading must cope (it needs
// a BuildableClient to apply it).
func TestCABundle(t *testing.T) {
	bundle := os.Getenv("AWS_CA_BUNDLE")
	if bundle == "" {
		bundle = "/etc/ssl/certs/ca-certificates.crt"
		if _, err := os.Stat(bundle); err != nil {
			t.Skip("no CA bundle to test with")
		}
		t.Setenv("AWS_CA_BUNDLE", bundle)
	}
	s, _, _ := newStore(t)
	if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("stat with AWS_CA_BUNDLE=%s: %v", bundle, err)
	}
}

// A private MinIO that goes away and comes back: requests fail with a
// storage error meanwhile, and data survives the restart.
func TestServerRestart(t *testing.T) {
	m := testenv.StartMinIO(t)
	cfg := m.Config("restart")
	cfg.PartSize = storetest.PartSize
	s, err := s3store.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	storetest.MustPut(t, s, "k", []byte("kept"))
	m.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = s.Stat(ctx, "k")
	if err == nil || errors.Is(err, vfs.ErrNotExist) || !strings.HasPrefix(err.Error(), "storage error: stat: ") {
		t.Fatalf("stat with the server down: %v", err)
	}
	m.Start()
	if b, err := storetest.Get(t, s, "k"); err != nil || string(b) != "kept" {
		t.Fatalf("after restart: %q, %v", b, err)
	}
	if h := head(t, testenv.Client(t, cfg), cfg.Bucket, "k"); h.ServerSideEncryption != types.ServerSideEncryptionAes256 {
		t.Fatalf("SSE on the private MinIO: %q", h.ServerSideEncryption)
	}
}

// File times are stored as rclone stores them (X-Amz-Meta-Mtime, Unix
// seconds with the fraction), and setting one on a stored object keeps its
// encryption, content type, other metadata and content, by CopyObject and
// by multipart copy alike. A time given after a multipart upload started
// is refused by the upload (the caller sets it after the commit).
func TestMTimeMetadata(t *testing.T) {
	for _, kms := range []bool{false, true} {
		t.Run(map[bool]string{false: "AES256", true: "KMS"}[kms], func(t *testing.T) {
			t.Parallel()
			s, cfg, c := newStore(t, func(c *s3store.Config) {
				if kms {
					c.SSE, c.KMSKeyID = s3store.SSEKMS, "sftpgw-test"
				}
			})
			wantSSE := types.ServerSideEncryptionAes256
			if kms {
				wantSSE = types.ServerSideEncryptionAwsKms
			}
			mt := time.Unix(1577934240, 123456789)
			up, err := s.Create(t.Context(), "small", vfs.CreateOptions{SizeHint: -1})
			if err != nil {
				t.Fatal(err)
			}
			up.Write([]byte("hello"))
			if !up.SetMTime(mt) {
				t.Fatal("a single-part upload refused its time")
			}
			if err := up.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := head(t, c, cfg.Bucket, "small").Metadata["mtime"]; got != "1577934240.123456789" {
				t.Errorf("X-Amz-Meta-Mtime %q; want rclone's 1577934240.123456789", got)
			}

			up, err = s.Create(t.Context(), "multi", vfs.CreateOptions{SizeHint: -1})
			if err != nil {
				t.Fatal(err)
			}
			up.Write(storetest.Data(storetest.PartSize + 1)) // the first part is on its way
			if up.SetMTime(mt) {
				t.Error("a started multipart upload accepted a time it cannot store")
			}
			if err := up.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}

			// Another tool's metadata and content type must survive.
			big := storetest.Data(2*storetest.PartSize + 3)
			for _, k := range []string{"tagged", "tagged-big"} {
				body := []byte("content")
				if k == "tagged-big" {
					body = big
				}
				_, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &cfg.Bucket, Key: aws.String(k),
					Body: strings.NewReader(string(body)), ContentType: aws.String("application/pdf"),
					Metadata: map[string]string{"owner": "hr"}, ServerSideEncryption: wantSSE,
					SSEKMSKeyId: map[bool]*string{true: aws.String("sftpgw-test")}[kms]})
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, limits := range [][2]int64{{5 << 30, 512 << 20}, {1, 5 << 20}} { // CopyObject, then multipart
				s.SetCopyLimits(limits[0], limits[1])
				mt = mt.Add(time.Hour)
				for _, k := range []string{"small", "multi", "tagged", "tagged-big"} {
					if err := s.SetMTime(t.Context(), k, mt); err != nil {
						t.Fatalf("set mtime %s (copy limit %d): %v", k, limits[0], err)
					}
					h := head(t, c, cfg.Bucket, k)
					if h.ServerSideEncryption != wantSSE {
						t.Errorf("%s: SSE %q after setting its time; want %q", k, h.ServerSideEncryption, wantSSE)
					}
					if oi, err := s.Stat(t.Context(), k); err != nil || !oi.MTime.Equal(mt) {
						t.Errorf("%s: MTime %v, %v; want %v", k, oi.MTime, err, mt)
					}
					if strings.HasPrefix(k, "tagged") && (aws.ToString(h.ContentType) != "application/pdf" || h.Metadata["owner"] != "hr") {
						t.Errorf("%s: content type %q, metadata %v: lost by the copy", k, aws.ToString(h.ContentType), h.Metadata)
					}
				}
			}
			if got, err := storetest.Get(t, s, "tagged-big"); err != nil || string(got) != string(big) {
				t.Errorf("content changed by setting the time (%d bytes, %v)", len(got), err)
			}
			noPending(t, c, cfg.Bucket, "")
		})
	}
}

// BenchmarkSetMTime measures setting a stored object's time (a server-side
// copy onto itself) for a small and a large object; docs/file-times.md
// quotes the figures. go test ./vfs/s3store -run - -bench SetMTime -benchtime 3x
func BenchmarkSetMTime(b *testing.B) {
	for _, size := range []int64{1 << 10, 1 << 30} {
		b.Run(map[int64]string{1 << 10: "1KiB", 1 << 30: "1GiB"}[size], func(b *testing.B) {
			cfg := testenv.S3(b)
			s, err := s3store.New(b.Context(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			up, err := s.Create(b.Context(), "obj", vfs.CreateOptions{SizeHint: size})
			if err != nil {
				b.Fatal(err)
			}
			chunk := storetest.Data(1 << 20)
			for left := size; left > 0; left -= int64(len(chunk)) {
				if _, err := up.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := up.Commit(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				if err := s.SetMTime(b.Context(), "obj", time.Unix(1577934240+int64(i), 0)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkListMTimes measures a 1000-entry listing page without the
// entries' times, with them as a first listing costs (one HEAD per entry,
// listHeads at a time) and as listing the same objects again costs (times
// from the store's cache).
func BenchmarkListMTimes(b *testing.B) {
	cfg := testenv.S3(b)
	s, err := s3store.New(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MTimeCache = -1
	uncached, err := s3store.New(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range 1000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			storetest.MustPut(b, s, fmt.Sprintf("d/%04d", i), []byte("x"))
		}()
	}
	wg.Wait()
	// Times are only cached once their objects are 2 s old (mtimeSettle).
	time.Sleep(2 * time.Second)
	for _, c := range []struct {
		name string
		s    *s3store.Store
		mt   bool
	}{{"plain", s, false}, {"mtimes-first", uncached, true}, {"mtimes-again", s, true}} {
		b.Run(c.name, func(b *testing.B) {
			if c.s == s && c.mt {
				if _, err := s.List(b.Context(), vfs.ListOptions{Prefix: "d/", MTimes: true}); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
			}
			for range b.N {
				p, err := c.s.List(b.Context(), vfs.ListOptions{Prefix: "d/", MTimes: c.mt})
				if err != nil || len(p.Entries) != 1000 {
					b.Fatalf("%d entries, %v", len(p.Entries), err)
				}
			}
		})
	}
}
