package s3store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Copy implements vfs.Store server side: CopyObject up to 5 GiB, a multipart
// copy (UploadPartCopy) above. The destination always gets our SSE settings
// and the source's metadata (its MTime among them).
func (s *Store) Copy(ctx context.Context, src, dst string) error {
	defer s.mtimes.forget(dst)
	head, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &src})
	if err != nil {
		return mapErr("copy", err)
	}
	size := aws.ToInt64(head.ContentLength)
	source := copySource(s.bucket, src)
	sse, kms := s.sseFields()
	if size <= s.copyThreshold {
		_, err := s.c.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket:               &s.bucket,
			Key:                  &dst,
			CopySource:           &source,
			ServerSideEncryption: sse,
			SSEKMSKeyId:          kms,
			// Pin the version we measured, so a concurrent overwrite
			// fails the copy instead of copying something else.
			CopySourceIfMatch: head.ETag,
		})
		return mapErr("copy", err)
	}
	return s.multipartCopy(ctx, source, dst, size, head.ETag, copyMetaOf(head))
}

// multipartCopy copies size bytes in copyPart-sized ranges, Concurrency at
// a time, and aborts the upload on any failure. The new object gets m (a
// multipart upload starts with no metadata of its own).
func (s *Store) multipartCopy(ctx context.Context, source, dst string, size int64, etag *string, m copyMeta) (err error) {
	sse, kms := s.sseFields()
	created, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:               &s.bucket,
		Key:                  &dst,
		ServerSideEncryption: sse,
		SSEKMSKeyId:          kms,
		Metadata:             m.meta,
		ContentType:          m.contentType,
		ContentEncoding:      m.contentEncoding,
		ContentDisposition:   m.contentDisposition,
		ContentLanguage:      m.contentLanguage,
		CacheControl:         m.cacheControl,
		StorageClass:         m.storageClass,
	})
	if err != nil {
		return mapErr("copy", err)
	}
	id := created.UploadId
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			s.c.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &dst, UploadId: id})
		}
	}()

	partSize := max(s.copyPart, (size+maxParts-1)/maxParts)
	nparts := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, nparts)

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, s.concurrency)
	)
	for i := 0; i < nparts; i++ {
		select {
		case sem <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			first := int64(i) * partSize
			last := min(first+partSize, size) - 1
			out, err := s.c.UploadPartCopy(pctx, &s3.UploadPartCopyInput{
				Bucket:            &s.bucket,
				Key:               &dst,
				UploadId:          id,
				PartNumber:        aws.Int32(int32(i + 1)),
				CopySource:        &source,
				CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", first, last)),
				CopySourceIfMatch: etag,
			})
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = mapErr("copy", err)
				}
				mu.Unlock()
				cancel()
				return
			}
			parts[i] = types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(int32(i + 1))}
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return mapErr("copy", err)
	}
	sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
	_, err = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &dst,
		UploadId:        id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	return mapErr("copy", err)
}

// copySource is the URL-escaped "bucket/key" CopySource wants. Everything
// but unreserved characters and "/" is escaped, so keys with spaces, "+",
// "%", "?" or non-ASCII survive every S3 implementation's decoder.
func copySource(bucket, key string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(bucket) + 1 + len(key)*3)
	b.WriteString(bucket)
	b.WriteByte('/')
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
