package s3store

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/vfs"
)

var (
	_ vfs.Suspender = (*upload)(nil)
	_ vfs.Resumer   = (*Store)(nil)
)

// Suspend implements vfs.Suspender: it waits for the parts in flight, then
// ends the upload without aborting the multipart upload. What is kept is
// the run of completed parts from part 1; a part that failed and the bytes
// still buffered are dropped (the client sends them again).
func (u *upload) Suspend(ctx context.Context) (vfs.SuspendedUpload, error) {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if u.finished {
		return vfs.SuspendedUpload{}, errFinished
	}
	u.finished = true
	u.stop()
	u.wg.Wait() // parts in flight finish (or fail) on their own context
	u.putBuf(u.buf)
	u.buf = nil
	defer u.end()
	u.mu.Lock()
	id, failed := u.uploadID, u.err
	parts := append([]types.CompletedPart(nil), u.parts...)
	u.aborting = true // nothing may start on this upload any more
	u.mu.Unlock()
	if failed != nil || id == nil {
		// Nothing to keep (a single PutObject never sent), or the upload
		// failed and fail() is aborting it already.
		u.abortMPU()
		u.cancel(errFinished)
		return vfs.SuspendedUpload{}, failed
	}
	u.cancel(errFinished)
	sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
	su := vfs.SuspendedUpload{ID: *id}
	for i, p := range parts {
		if int(*p.PartNumber) != i+1 {
			break
		}
		size := u.partSize(i + 1)
		su.Parts = append(su.Parts, vfs.PartRecord{Number: *p.PartNumber, Size: size, ETag: aws.ToString(p.ETag)})
		su.Size += size
	}
	if su.Size == 0 {
		u.abortID(id)
	}
	return su, nil
}

// Resume implements vfs.Resumer. It checks with ListParts that the
// multipart upload still exists and holds the recorded parts, so an upload
// the bucket's lifecycle rule aborted is reported as gone, not failed late.
func (s *Store) Resume(ctx context.Context, key string, su vfs.SuspendedUpload, opt vfs.CreateOptions) (vfs.Upload, error) {
	if len(su.Parts) == 0 || su.ID == "" {
		return nil, fmt.Errorf("s3store: resume %q: nothing to resume: %w", key, vfs.ErrNotExist)
	}
	have := map[int32]string{}
	var marker *string
	for {
		out, err := s.c.ListParts(ctx, &s3.ListPartsInput{Bucket: &s.bucket, Key: &key, UploadId: &su.ID, PartNumberMarker: marker})
		if err != nil {
			return nil, mapErr("resume", err)
		}
		for _, p := range out.Parts {
			have[aws.ToInt32(p.PartNumber)] = aws.ToString(p.ETag)
		}
		if !aws.ToBool(out.IsTruncated) || out.NextPartNumberMarker == nil {
			break
		}
		marker = out.NextPartNumberMarker
	}
	u := newUpload(ctx, s, key, opt)
	var sum int64
	for i, p := range su.Parts {
		if p.Number != int32(i+1) || have[p.Number] != p.ETag || p.Size < minPartSize {
			u.stop()
			u.cancel(errFinished)
			return nil, fmt.Errorf("s3store: resume %q: part %d is not as recorded: %w", key, p.Number, vfs.ErrNotExist)
		}
		u.parts = append(u.parts, types.CompletedPart{ETag: aws.String(p.ETag), PartNumber: aws.Int32(p.Number)})
		sum += p.Size
	}
	if sum != su.Size {
		u.stop()
		u.cancel(errFinished)
		return nil, fmt.Errorf("s3store: resume %q: parts hold %d bytes, not %d: %w", key, sum, su.Size, vfs.ErrNotExist)
	}
	id := su.ID
	u.uploadID = &id
	u.nparts = len(su.Parts)
	u.contig = len(su.Parts)
	u.metaSent = true // fixed when the multipart upload was created
	return u, nil
}

// DiscardSuspended implements vfs.Resumer.
func (s *Store) DiscardSuspended(ctx context.Context, key string, su vfs.SuspendedUpload) error {
	if su.ID == "" {
		return nil
	}
	_, err := s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &su.ID})
	if err != nil {
		if e := mapErr("abort", err); !errors.Is(e, vfs.ErrNotExist) {
			return e
		}
	}
	return nil
}
