// Command raws3 is the "upload to S3 directly" baseline of make bench: the
// same aws-sdk-go-v2 client settings as s3store (s3store.NewClient), without
// the SDK's transfer manager. Uploads are multipart with parallel parts and
// SSE-S3, like the gateway's; downloads are one streamed GET.
//
//	raws3 mkbucket BUCKET
//	raws3 put [-part 8MiB] [-concurrency 4] FILE BUCKET KEY
//	raws3 get BUCKET KEY FILE
//	raws3 mkobjects [-size 0] [-workers 32] BUCKET PREFIX N
//
// The endpoint and credentials come from the MinIO env file
// (SFTPGW_TEST_S3_ENDPOINT, SFTPGW_TEST_S3_ACCESS_KEY, SFTPGW_TEST_S3_SECRET_KEY).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/vfs/s3store"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "raws3:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: raws3 mkbucket|put|get|mkobjects ...")
	}
	ctx := context.Background()
	c, err := s3store.NewClient(ctx, s3store.Config{
		Region:          "us-east-1",
		Endpoint:        os.Getenv("SFTPGW_TEST_S3_ENDPOINT"),
		PathStyle:       true,
		AccessKeyID:     os.Getenv("SFTPGW_TEST_S3_ACCESS_KEY"),
		SecretAccessKey: os.Getenv("SFTPGW_TEST_S3_SECRET_KEY"),
	})
	if err != nil {
		return err
	}
	cmd, args := args[0], args[1:]
	fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
	part := fl.Int64("part", 8<<20, "part size in bytes (put)")
	conc := fl.Int("concurrency", 4, "parts in flight (put)")
	size := fl.Int("size", 0, "object size in bytes (mkobjects)")
	workers := fl.Int("workers", 32, "parallel PUTs (mkobjects)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	a := fl.Args()
	switch {
	case cmd == "mkbucket" && len(a) == 1:
		_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &a[0]})
		var owned *types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			return err
		}
		// Default encryption, so servers that do not ask for SSE (other
		// gateways compared in the bench) pay for it like ours does.
		_, err = c.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{
			Bucket: &a[0],
			ServerSideEncryptionConfiguration: &types.ServerSideEncryptionConfiguration{
				Rules: []types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: &types.ServerSideEncryptionByDefault{
					SSEAlgorithm: types.ServerSideEncryptionAes256}}},
			},
		})
		return err
	case cmd == "put" && len(a) == 3:
		return put(ctx, c, a[0], a[1], a[2], *part, *conc)
	case cmd == "get" && len(a) == 3:
		return get(ctx, c, a[0], a[1], a[2])
	case cmd == "mkobjects" && len(a) == 3:
		var n int
		if _, err := fmt.Sscanf(a[2], "%d", &n); err != nil {
			return fmt.Errorf("mkobjects: bad count %q", a[2])
		}
		return mkobjects(ctx, c, a[0], a[1], n, *size, *workers)
	}
	return fmt.Errorf("bad arguments for %q", cmd)
}

// put uploads file as parts of partSize, conc in flight, each part read
// into its own buffer (as the gateway does: it has no file to seek in).
func put(ctx context.Context, c *s3.Client, file, bucket, key string, partSize int64, conc int) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	mpu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &bucket, Key: &key, ServerSideEncryption: types.ServerSideEncryptionAes256,
	})
	if err != nil {
		return err
	}
	abort := func(err error) error {
		_, _ = c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
			Bucket: &bucket, Key: &key, UploadId: mpu.UploadId})
		return err
	}
	var (
		mu    sync.Mutex
		parts []types.CompletedPart
		first error
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, conc)
	pool := sync.Pool{New: func() any { b := make([]byte, partSize); return &b }}
	for num := int32(1); ; num++ {
		bp := pool.Get().(*[]byte)
		n, rerr := io.ReadFull(f, *bp)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			wg.Wait()
			return abort(rerr)
		}
		if n == 0 {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(num int32, bp *[]byte, n int) {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := c.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: &bucket, Key: &key, UploadId: mpu.UploadId, PartNumber: aws.Int32(num),
				Body: bytes.NewReader((*bp)[:n]), ContentLength: aws.Int64(int64(n)),
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			pool.Put(bp)
			parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		}(num, bp, n)
		if rerr != nil { // short last part
			break
		}
	}
	wg.Wait()
	if first != nil {
		return abort(first)
	}
	sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: &key, UploadId: mpu.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return abort(err)
	}
	return nil
}

// get streams one GET into file.
func get(ctx context.Context, c *s3.Client, bucket, key, file string) error {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(f, out.Body, buf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mkobjects creates n objects PREFIX000000.. of size bytes with SSE-S3.
func mkobjects(ctx context.Context, c *s3.Client, bucket, prefix string, n, size, workers int) error {
	body := make([]byte, size)
	jobs := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				key := fmt.Sprintf("%s%06d", prefix, i)
				_, err := c.PutObject(ctx, &s3.PutObjectInput{
					Bucket: &bucket, Key: &key, Body: bytes.NewReader(body),
					ContentLength: aws.Int64(int64(size)), ServerSideEncryption: types.ServerSideEncryptionAes256,
				})
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
loop:
	for i := range n {
		select {
		case jobs <- i:
		case err = <-errc:
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}
