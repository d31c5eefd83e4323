// Package posture checks (and with Fix, repairs) the security settings of
// the S3 buckets the gateway uses: versioning, default encryption, public
// access, a bucket policy that refuses plain-HTTP access and unencrypted
// uploads, MFA delete on file buckets, a lifecycle rule matching the
// retention period (and aborting incomplete uploads), Object Lock on the
// audit bucket, and an audit bucket separate from every file bucket. With
// Fix it also creates a missing bucket (the audit one with Object Lock).
//
// S3-compatible servers do not implement everything (MinIO has no public
// access block or MFA delete): such checks report "unsupported by
// endpoint" rather than a pass or a failure.
package posture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithymw "github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// Status is the outcome of one check.
type Status string

const (
	Pass        Status = "pass"
	Fixed       Status = "fixed"
	Fail        Status = "FAIL"
	Unsupported Status = "unsupported by endpoint"
	Skipped     Status = "skipped"
)

// Result is one row of the report.
type Result struct {
	Storage string
	Bucket  string
	Check   string
	Status  Status
	Detail  string
	Fix     string // how to repair a failure by hand
}

// Target is one storage block to check.
type Target struct {
	Storage   string
	Type      string // "s3" or "local"
	S3        s3store.Config
	Root      string        // local directory
	Retention time.Duration // 0: none
	Files     bool          // a role keeps files here (MFA delete applies)
	Audit     bool          // holds the audit trail
	// LockRetention is the audit block's object_lock_retention; with it,
	// or with strict, the audit bucket must have S3 Object Lock.
	LockRetention time.Duration
	RequireLock   bool
	// ResumeWindow is resume_window: the lifecycle rule must not abort
	// an interrupted upload before the gateway's own sweeper does.
	ResumeWindow time.Duration
}

// Options tune Run.
type Options struct {
	Fix bool // apply what can be applied, then check again
}

// Targets lists the configured storage blocks, in name order.
func Targets(cfg *config.Config) []Target {
	used := map[string]bool{}
	for _, r := range cfg.Roles {
		used[r.Storage] = true
	}
	var out []Target
	for name, s := range cfg.Storage {
		t := Target{Storage: name, Type: s.Type, Root: s.Root, Retention: s.RetentionPeriod(),
			Audit: cfg.Audit != nil && cfg.Audit.Storage == name, ResumeWindow: cfg.ResumeWindow}
		t.Files = used[name] && !t.Audit
		if t.Audit {
			t.LockRetention = cfg.Audit.LockRetention
			t.RequireLock = cfg.Strict || t.LockRetention > 0
		}
		if s.Type == "s3" {
			t.S3 = S3Config(s)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Storage < out[j].Storage })
	return out
}

// S3Config is the store configuration of an s3 storage block.
func S3Config(s config.StorageBlock) s3store.Config {
	return s3store.Config{Bucket: s.Bucket, Region: s.Region, Endpoint: s.Endpoint, PathStyle: s.PathStyle,
		SSE: s.SSE, KMSKeyID: s.KMSKeyID}
}

// Run checks every target (and fixes, with o.Fix). It never returns early:
// a bucket it cannot reach is reported as a failure.
func Run(ctx context.Context, targets []Target, o Options) []Result {
	var out []Result
	for _, t := range targets {
		switch t.Type {
		case "s3":
			out = append(out, checkBucket(ctx, t, o)...)
		default:
			out = append(out, Result{Storage: t.Storage, Bucket: t.Root, Check: "posture", Status: Skipped,
				Detail: "local storage: bucket checks apply to S3 only; keep the directory private (0700) on an encrypted disk"})
		}
	}
	return append(out, separateAudit(targets))
}

// Failures counts the results that make a run fail; strict counts
// unsupported checks too.
func Failures(rs []Result, strict bool) int {
	n := 0
	for _, r := range rs {
		if r.Status == Fail || (strict && r.Status == Unsupported) {
			n++
		}
	}
	return n
}

// Print writes the results as a table, each failure followed by its fix.
func Print(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STORAGE\tBUCKET\tCHECK\tRESULT\tDETAIL")
	counts := map[Status]int{}
	for _, r := range rs {
		counts[r.Status]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Storage, r.Bucket, r.Check, r.Status, r.Detail)
		if r.Status == Fail && r.Fix != "" {
			fmt.Fprintf(tw, "\t\t\t\tfix: %s\n", r.Fix)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d passed, %d fixed, %d failed, %d unsupported by endpoint, %d skipped\n",
		counts[Pass], counts[Fixed], counts[Fail], counts[Unsupported], counts[Skipped])
}

// separateAudit checks that the audit trail has a bucket of its own.
func separateAudit(ts []Target) Result {
	r := Result{Storage: "*", Check: "audit bucket separate"}
	var audit *Target
	for i := range ts {
		if ts[i].Audit {
			audit = &ts[i]
		}
	}
	if audit == nil {
		r.Status, r.Detail = Skipped, "no audit block configured"
		return r
	}
	r.Storage, r.Bucket = audit.Storage, audit.S3.Bucket
	if audit.Type != "s3" {
		r.Bucket = audit.Root
	}
	for _, t := range ts {
		if t.Storage != audit.Storage && location(t) == location(*audit) {
			r.Status = Fail
			r.Detail = fmt.Sprintf("storage %q (files) is the same bucket as the audit trail", t.Storage)
			r.Fix = "give the audit block a storage block with a bucket of its own, readable only by auditors"
			return r
		}
	}
	r.Status, r.Detail = Pass, "no file storage shares the audit bucket"
	return r
}

func location(t Target) string {
	if t.Type == "s3" {
		return strings.TrimSuffix(t.S3.Endpoint, "/") + "|" + t.S3.Bucket
	}
	return "local|" + t.Root
}

// bucket is the state shared by the checks of one bucket.
type bucket struct {
	t      Target
	c      *s3.Client
	name   string
	minio  bool // the server said so; used for what MinIO lacks
	policy *policyDoc
	polErr error
}

// check is one posture rule.
type check struct {
	name    string
	applies func(b *bucket) bool // nil: always
	run     func(ctx context.Context, b *bucket) (Status, string)
	fix     func(ctx context.Context, b *bucket) error // nil: cannot be automated
	fixKey  string                                     // checks sharing a fix apply it once
	howto   func(b *bucket) string
}

type outcome struct {
	ch     check
	st     Status
	detail string
}

func checkBucket(ctx context.Context, t Target, o Options) []Result {
	b := &bucket{t: t, name: t.S3.Bucket}
	row := func(check string, st Status, detail, fix string) Result {
		return Result{Storage: t.Storage, Bucket: b.name, Check: check, Status: st, Detail: detail, Fix: fix}
	}
	c, err := s3store.NewClient(ctx, t.S3)
	if err != nil {
		return []Result{row("reachable", Fail, err.Error(), "check the region and credentials of this storage block")}
	}
	b.c = c
	out, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.name})
	var created []Result
	if notFound(err) {
		region := c.Options().Region
		if !o.Fix {
			return []Result{row("bucket exists", Fail, "no bucket "+b.name+" at this endpoint",
				"aws s3api create-bucket --bucket "+b.name+createBucketRegion(region)+lockFlag(t.Audit)+" (or sftpgw check --fix)")}
		}
		// A first deployment: --fix creates the bucket, then the checks
		// below find (and fix) it like any other fresh bucket.
		if err = createBucket(ctx, c, b.name, region, t.Audit); err != nil {
			return []Result{row("bucket exists", Fail, "CreateBucket: "+errText(err), "create the bucket: aws s3api create-bucket --bucket "+b.name+createBucketRegion(region)+lockFlag(t.Audit))}
		}
		d := "created (region " + region + ")"
		if t.Audit {
			d = "created with Object Lock (region " + region + ")"
		}
		created = append(created, row("bucket exists", Fixed, d, ""))
		out, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.name})
	}
	if err != nil {
		return []Result{row("reachable", Fail, "HeadBucket: "+errText(err), "check the bucket name, region, endpoint and credentials")}
	}
	b.minio = strings.Contains(serverHeader(out.ResultMetadata), "MinIO")
	outs := []*outcome{}
	for _, ch := range checks {
		if ch.applies == nil || ch.applies(b) {
			st, d := ch.run(ctx, b)
			outs = append(outs, &outcome{ch: ch, st: st, detail: d})
		}
	}
	if o.Fix {
		applyFixes(ctx, b, outs)
	}
	rs := created
	for _, oc := range outs {
		fix := ""
		if oc.st == Fail {
			fix = oc.ch.howto(b)
		}
		rs = append(rs, row(oc.ch.name, oc.st, oc.detail, fix))
	}
	return rs
}

// applyFixes repairs the failed checks that can be repaired (each shared
// fix once), then checks them again.
func applyFixes(ctx context.Context, b *bucket, outs []*outcome) {
	key := func(ch check) string {
		if ch.fixKey != "" {
			return ch.fixKey
		}
		return ch.name
	}
	done := map[string]error{}
	for _, oc := range outs {
		if oc.st == Fail && oc.ch.fix != nil {
			if _, ok := done[key(oc.ch)]; !ok {
				done[key(oc.ch)] = oc.ch.fix(ctx, b)
			}
		}
	}
	b.policy, b.polErr = nil, nil
	for _, oc := range outs {
		err, tried := done[key(oc.ch)]
		if oc.st != Fail || oc.ch.fix == nil || !tried {
			continue
		}
		if err != nil {
			oc.detail += "; fix failed: " + errText(err)
			continue
		}
		switch st, d := oc.ch.run(ctx, b); st {
		case Pass:
			oc.st, oc.detail = Fixed, d
		case Unsupported:
			oc.st, oc.detail = st, d
		default:
			oc.detail = "fix applied, still failing: " + d
		}
	}
}

// errText is a short description of an SDK error for the operator.
// notFound: HeadBucket has no body, so a missing bucket is a bare 404.
func notFound(err error) bool {
	var re *smithyhttp.ResponseError
	return err != nil && (errCode(err) == "NotFound" || errCode(err) == "NoSuchBucket" ||
		(errors.As(err, &re) && re.HTTPStatusCode() == 404))
}

// createBucket creates a bucket in region (us-east-1 takes no location).
// An audit bucket gets Object Lock, which can only be set at creation.
func createBucket(ctx context.Context, c *s3.Client, name, region string, lock bool) error {
	in := &s3.CreateBucketInput{Bucket: &name}
	if lock {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	if region != "" && region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(region)}
	}
	_, err := c.CreateBucket(ctx, in)
	return err
}

func lockFlag(audit bool) string {
	if audit {
		return " --object-lock-enabled-for-bucket"
	}
	return ""
}

// createBucketRegion is the AWS CLI's region argument for create-bucket.
func createBucketRegion(region string) string {
	if region == "" || region == "us-east-1" {
		return ""
	}
	return " --region " + region + " --create-bucket-configuration LocationConstraint=" + region
}

func errText(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		if m := api.ErrorMessage(); m != "" {
			return api.ErrorCode() + ": " + m
		}
		return api.ErrorCode()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func errCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// notImplemented reports a server that does not offer an API at all.
func notImplemented(err error) bool {
	var re *smithyhttp.ResponseError
	return errCode(err) == "NotImplemented" || (errors.As(err, &re) && re.HTTPStatusCode() == 501)
}

func serverHeader(md smithymw.Metadata) string {
	if r, ok := awsmw.GetRawResponse(md).(*smithyhttp.Response); ok && r != nil {
		return r.Header.Get("Server")
	}
	return ""
}

// plainHTTP reports an endpoint reached without TLS.
func plainHTTP(b *bucket) bool { return strings.HasPrefix(strings.ToLower(b.t.S3.Endpoint), "http://") }

func loopback(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// arn is the bucket's ARN prefix in the partition of its region.
func (b *bucket) arn() string {
	p := "aws"
	switch r := b.t.S3.Region; {
	case strings.HasPrefix(r, "cn-"):
		p = "aws-cn"
	case strings.HasPrefix(r, "us-gov-"):
		p = "aws-us-gov"
	}
	return "arn:" + p + ":s3:::" + b.name
}
