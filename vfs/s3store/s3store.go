// Package s3store is a vfs.Store over an S3 bucket (AWS S3 or a compatible
// server such as MinIO), using aws-sdk-go-v2.
//
// Every write carries server-side encryption (SSE-S3 by default, or SSE-KMS);
// if the server refuses it the write fails, it is never retried without.
// Uploads stream through a bounded number of multipart parts, so memory per
// upload is at most (Concurrency+1) part buffers.
package s3store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/vfs"
)

// Config selects a bucket and how to reach and write it.
type Config struct {
	Bucket   string
	Region   string // default: from the environment, else us-east-1
	Endpoint string // e.g. http://127.0.0.1:9000 for MinIO; empty for AWS
	// PathStyle addresses the bucket as endpoint/bucket (MinIO) rather than
	// bucket.endpoint.
	PathStyle bool
	// SSE is "AES256" (SSE-S3, the default) or "aws:kms" (SSE-KMS).
	SSE      string
	KMSKeyID string // only with "aws:kms"; empty means the account's default key
	// Static credentials; when empty the default credential chain is used.
	AccessKeyID, SecretAccessKey string
	// PartSize is the multipart part size for the first 1000 parts
	// (0 = 8 MiB, minimum 5 MiB).
	PartSize int64
	// Concurrency is the number of parts in flight per upload (0 = 2).
	// An upload holds Concurrency+1 part buffers; more only pays off on
	// links where one part takes longer to send than the client to fill.
	Concurrency int
	// MTimeCache is how many objects' times are remembered between
	// listings, so that listing unchanged objects again costs no HEAD
	// (0 = DefaultMTimeCache, negative = none).
	MTimeCache int
}

const (
	SSEAES256 = "AES256"
	SSEKMS    = "aws:kms"

	DefaultPartSize    = 8 << 20
	DefaultConcurrency = 2         // 4 bought no speed in make bench and 16 MiB more per upload
	minPartSize        = 5 << 20   // S3 minimum for all but the last part
	maxPartSize        = 5 << 30   // S3 maximum part size
	maxParts           = 10000     // S3 maximum parts per upload
	maxSingleCopy      = 5 << 30   // CopyObject limit; larger copies go multipart
	copyPartSize       = 512 << 20 // UploadPartCopy part size
	listMax            = 1000
	// cleanupTimeout bounds the aborts we run after the caller's context
	// is gone; they must still run or a pending upload would be left behind.
	cleanupTimeout = 2 * time.Minute
)

// Store is a vfs.Store over one bucket. It is safe for concurrent use.
type Store struct {
	c      *s3.Client
	bucket string
	sse    types.ServerSideEncryption
	kmsKey *string

	partSize    int64
	concurrency int

	// Overridable in tests so the multipart copy path runs without 5 GiB.
	copyThreshold int64
	copyPart      int64

	pools sync.Map // part size (int64) → *partPool

	mtimes *mtimeCache
}

var _ vfs.Store = (*Store)(nil)

// New checks cfg and builds the client. It does not contact the server.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3store: bucket is required")
	}
	s := &Store{
		bucket:        cfg.Bucket,
		partSize:      cfg.PartSize,
		concurrency:   cfg.Concurrency,
		copyThreshold: maxSingleCopy,
		copyPart:      copyPartSize,
		mtimes:        newMTimeCache(cmp.Or(cfg.MTimeCache, DefaultMTimeCache)),
	}
	switch cfg.SSE {
	case "", SSEAES256:
		s.sse = types.ServerSideEncryptionAes256
		if cfg.KMSKeyID != "" {
			return nil, errors.New("s3store: KMSKeyID needs SSE aws:kms")
		}
	case SSEKMS:
		s.sse = types.ServerSideEncryptionAwsKms
		if cfg.KMSKeyID != "" {
			s.kmsKey = aws.String(cfg.KMSKeyID)
		}
	default:
		return nil, fmt.Errorf("s3store: unsupported SSE %q (want AES256 or aws:kms)", cfg.SSE)
	}
	switch {
	case s.partSize == 0:
		s.partSize = DefaultPartSize
	case s.partSize < minPartSize || s.partSize > maxPartSize:
		return nil, fmt.Errorf("s3store: part size %d outside 5 MiB..5 GiB", s.partSize)
	}
	switch {
	case s.concurrency == 0:
		s.concurrency = DefaultConcurrency
	case s.concurrency < 0:
		return nil, fmt.Errorf("s3store: negative concurrency %d", s.concurrency)
	}
	c, err := NewClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// NewClient builds the SDK client New uses (also handy for tests and tools).
func NewClient(ctx context.Context, cfg Config) (*s3.Client, error) {
	// A BuildableClient, because config applies AWS_CA_BUNDLE by
	// rebuilding the transport and fails with any other client type.
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = 10 * time.Second
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(t *http.Transport) {
			// Many sessions upload in parallel to one host; keep their
			// connections instead of re-dialling (and re-handshaking).
			t.MaxIdleConns = 1024
			t.MaxIdleConnsPerHost = 256
			t.IdleConnTimeout = 90 * time.Second
			t.ResponseHeaderTimeout = 2 * time.Minute
			// Bodies bypass these buffers when reads and writes are at
			// least this large (downloads read up to 255 KiB at a time),
			// so bigger ones only cost an extra copy and idle memory.
			t.WriteBufferSize = 64 << 10
			t.ReadBufferSize = 64 << 10
		})
	opts := []func(*config.LoadOptions) error{config.WithHTTPClient(httpClient)}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		// Config errors name files and settings, never secrets.
		return nil, fmt.Errorf("s3store: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Only send checksums S3 insists on: the default (CRC on every
		// request) costs CPU and is not understood by every S3 clone.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// Client returns the underlying SDK client.
func (s *Store) Client() *s3.Client { return s.c }

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

func isMarker(key string) bool { return strings.HasSuffix(key, "/") }

// Stat implements vfs.Store with HeadObject.
func (s *Store) Stat(ctx context.Context, key string) (vfs.ObjectInfo, error) {
	out, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return vfs.ObjectInfo{}, mapErr("stat", err)
	}
	return vfs.ObjectInfo{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		IsDir:   isMarker(key),
		MTime:   parseMTime(out.Metadata),
	}, nil
}

// List implements vfs.Store with ListObjectsV2. Objects and common prefixes
// come back merged in key order; a "dir/" marker object is an IsDir entry.
//
// The page token is ours: "c" + an S3 continuation token, or "k" + a key to
// start after. We never send MaxKeys=1 (MinIO mishandles it: it ends the
// listing early), so for Limit 1 we fetch two entries, return one and
// resume after it with StartAfter.
func (s *Store) List(ctx context.Context, opt vfs.ListOptions) (vfs.Page, error) {
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(opt.Prefix)}
	if !opt.Recursive {
		in.Delimiter = aws.String("/")
	}
	switch {
	case opt.Token == "":
	case opt.Token[0] == 'c':
		in.ContinuationToken = aws.String(opt.Token[1:])
	case opt.Token[0] == 'k':
		in.StartAfter = aws.String(opt.Token[1:])
	default:
		return vfs.Page{}, fmt.Errorf("s3store: invalid list token")
	}
	limit := listMax
	if opt.Limit > 0 {
		limit = min(opt.Limit, listMax)
	}
	in.MaxKeys = aws.Int32(int32(max(limit, 2)))
	out, err := s.c.ListObjectsV2(ctx, in)
	if err != nil {
		return vfs.Page{}, mapErr("list", err)
	}
	page := vfs.Page{Entries: make([]vfs.ObjectInfo, 0, len(out.Contents)+len(out.CommonPrefixes))}
	var etags map[string]string // key → ETag, to find entries' times in the cache
	if opt.MTimes {
		etags = make(map[string]string, len(out.Contents))
	}
	for _, o := range out.Contents {
		k := aws.ToString(o.Key)
		if etags != nil {
			etags[k] = aws.ToString(o.ETag)
		}
		page.Entries = append(page.Entries, vfs.ObjectInfo{
			Key:     k,
			Size:    aws.ToInt64(o.Size),
			ModTime: aws.ToTime(o.LastModified),
			IsDir:   isMarker(k),
		})
	}
	for _, p := range out.CommonPrefixes {
		page.Entries = append(page.Entries, vfs.ObjectInfo{Key: aws.ToString(p.Prefix), IsDir: true})
	}
	sort.Slice(page.Entries, func(i, j int) bool { return page.Entries[i].Key < page.Entries[j].Key })
	if len(page.Entries) > limit {
		page.Entries = page.Entries[:limit]
		after := page.Entries[limit-1].Key
		if !opt.Recursive && isMarker(after) && after != opt.Prefix {
			// A common prefix: start after everything below it, too.
			// U+10FFFF is the largest code point, so no key below it
			// sorts later (short of one that itself starts with it).
			after += "\U0010FFFF"
		}
		page.Next = "k" + after
	} else if aws.ToBool(out.IsTruncated) && aws.ToString(out.NextContinuationToken) != "" {
		page.Next = "c" + aws.ToString(out.NextContinuationToken)
	}
	if opt.MTimes {
		if err := s.fillMTimes(ctx, page.Entries, etags); err != nil {
			return vfs.Page{}, err
		}
	}
	return page, nil
}

// Read implements vfs.Store with a ranged GetObject.
func (s *Store) Read(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("s3store: negative offset %d", offset)
	}
	if length == 0 {
		// Nothing to fetch, but a missing key must still say so.
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return emptyBody(), nil
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	switch {
	case offset == 0 && length < 0:
		// No Range at all: a range on a 0-byte object is unsatisfiable.
	case length < 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	default:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	}
	out, err := s.c.GetObject(ctx, in)
	if err != nil {
		if in.Range != nil && httpStatus(err) == http.StatusRequestedRangeNotSatisfiable {
			// The object exists but starts before offset: like reading a
			// file at EOF, that is an empty stream.
			return emptyBody(), nil
		}
		return nil, mapErr("read", err)
	}
	return out.Body, nil
}

func emptyBody() io.ReadCloser { return io.NopCloser(bytes.NewReader(nil)) }

// Delete implements vfs.Store with DeleteObject.
func (s *Store) Delete(ctx context.Context, key string) error {
	defer s.mtimes.forget(key)
	_, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil && !errors.Is(mapErr("", err), vfs.ErrNotExist) {
		return mapErr("delete", err)
	}
	return nil
}

// Create implements vfs.Store. ctx bounds the whole upload, including parts
// sent in the background by Write: cancelling it aborts the upload. Pass a
// context that lives as long as the transfer (the session's or the file
// handle's), not one scoped to a single request.
func (s *Store) Create(ctx context.Context, key string, opt vfs.CreateOptions) (vfs.Upload, error) {
	if key == "" {
		return nil, errors.New("s3store: empty key")
	}
	return newUpload(ctx, s, key, opt), nil
}

// sseFields returns the encryption settings every write carries.
func (s *Store) sseFields() (types.ServerSideEncryption, *string) {
	return s.sse, s.kmsKey
}

// partPool returns the buffer pool for one part size.
func (s *Store) partPool(size int64) *partPool {
	if p, ok := s.pools.Load(size); ok {
		return p.(*partPool)
	}
	p, _ := s.pools.LoadOrStore(size, newPartPool(int(size)))
	return p.(*partPool)
}
