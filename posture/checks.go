package posture

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// lifecycleRuleID names the rule `check --fix` installs (and replaces).
const lifecycleRuleID = "sftpgw-retention"

var checks = []check{
	{
		name: "endpoint TLS",
		run: func(_ context.Context, b *bucket) (Status, string) {
			switch {
			case !plainHTTP(b):
				return Pass, "requests use https"
			case loopback(b.t.S3.Endpoint):
				return Pass, "plain http on loopback: the traffic stays on this host"
			}
			return Fail, "the gateway reaches " + b.t.S3.Endpoint + " without TLS"
		},
		howto: func(*bucket) string {
			return "serve the endpoint over https and set endpoint = \"https://...\" in the storage block"
		},
	},
	{
		name: "versioning",
		run: func(ctx context.Context, b *bucket) (Status, string) {
			v, err := b.c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &b.name})
			switch {
			case notImplemented(err):
				return Unsupported, "GetBucketVersioning not implemented"
			case err != nil:
				return Fail, "cannot read versioning: " + errText(err)
			case v.Status == types.BucketVersioningStatusEnabled:
				return Pass, "enabled"
			case v.Status == "":
				return Fail, "never enabled"
			}
			return Fail, "versioning is " + string(v.Status)
		},
		fix: func(ctx context.Context, b *bucket) error {
			_, err := b.c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &b.name,
				VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
			return err
		},
		howto: func(b *bucket) string {
			return "aws s3api put-bucket-versioning --bucket " + b.name + " --versioning-configuration Status=Enabled (or sftpgw check --fix)"
		},
	},
	{
		name: "default encryption",
		run: func(ctx context.Context, b *bucket) (Status, string) {
			e, err := b.c.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: &b.name})
			switch {
			case errCode(err) == "ServerSideEncryptionConfigurationNotFoundError":
				return Fail, "no default encryption"
			case notImplemented(err):
				return Unsupported, "GetBucketEncryption not implemented"
			case err != nil:
				return Fail, "cannot read encryption: " + errText(err)
			}
			if e.ServerSideEncryptionConfiguration != nil {
				for _, r := range e.ServerSideEncryptionConfiguration.Rules {
					if d := r.ApplyServerSideEncryptionByDefault; d != nil && d.SSEAlgorithm != "" {
						return Pass, string(d.SSEAlgorithm)
					}
				}
			}
			return Fail, "no default encryption rule"
		},
		fix: func(ctx context.Context, b *bucket) error {
			def := &types.ServerSideEncryptionByDefault{SSEAlgorithm: types.ServerSideEncryptionAes256}
			if b.t.S3.SSE == s3store.SSEKMS {
				def.SSEAlgorithm = types.ServerSideEncryptionAwsKms
				if b.t.S3.KMSKeyID != "" {
					def.KMSMasterKeyID = aws.String(b.t.S3.KMSKeyID)
				}
			}
			_, err := b.c.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: &b.name,
				ServerSideEncryptionConfiguration: &types.ServerSideEncryptionConfiguration{
					Rules: []types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: def}}}})
			return err
		},
		howto: func(b *bucket) string {
			return "aws s3api put-bucket-encryption --bucket " + b.name +
				` --server-side-encryption-configuration '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}' (or sftpgw check --fix)`
		},
	},
	{
		name: "public access block",
		run: func(ctx context.Context, b *bucket) (Status, string) {
			p, err := b.c.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: &b.name})
			switch {
			case notImplemented(err):
				return Unsupported, "GetPublicAccessBlock not implemented"
			case errCode(err) == "NoSuchPublicAccessBlockConfiguration":
				return Fail, "no public access block"
			case err != nil:
				return Fail, "cannot read the public access block: " + errText(err)
			}
			c := p.PublicAccessBlockConfiguration
			if c == nil {
				return Fail, "no public access block"
			}
			var off []string
			for name, v := range map[string]*bool{"BlockPublicAcls": c.BlockPublicAcls, "IgnorePublicAcls": c.IgnorePublicAcls,
				"BlockPublicPolicy": c.BlockPublicPolicy, "RestrictPublicBuckets": c.RestrictPublicBuckets} {
				if !aws.ToBool(v) {
					off = append(off, name)
				}
			}
			if len(off) > 0 {
				slices.Sort(off)
				return Fail, "off: " + strings.Join(off, ", ")
			}
			return Pass, "all four settings on"
		},
		fix: func(ctx context.Context, b *bucket) error {
			_, err := b.c.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: &b.name,
				PublicAccessBlockConfiguration: &types.PublicAccessBlockConfiguration{BlockPublicAcls: aws.Bool(true),
					IgnorePublicAcls: aws.Bool(true), BlockPublicPolicy: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true)}})
			return err
		},
		howto: func(b *bucket) string {
			return "aws s3api put-public-access-block --bucket " + b.name +
				" --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true (or sftpgw check --fix)"
		},
	},
	{
		name: "no public ACL",
		run: func(ctx context.Context, b *bucket) (Status, string) {
			a, err := b.c.GetBucketAcl(ctx, &s3.GetBucketAclInput{Bucket: &b.name})
			switch {
			case notImplemented(err):
				return Unsupported, "GetBucketAcl not implemented"
			case err != nil:
				return Fail, "cannot read the ACL: " + errText(err)
			}
			for _, g := range a.Grants {
				if g.Grantee == nil {
					continue
				}
				uri := aws.ToString(g.Grantee.URI)
				if strings.HasSuffix(uri, "/global/AllUsers") || strings.HasSuffix(uri, "/global/AuthenticatedUsers") {
					return Fail, fmt.Sprintf("ACL grants %s to %s", g.Permission, uri[strings.LastIndex(uri, "/")+1:])
				}
			}
			return Pass, "no grant to AllUsers or AuthenticatedUsers"
		},
		howto: func(b *bucket) string {
			return "aws s3api put-bucket-acl --bucket " + b.name + " --acl private (better: set Object Ownership to BucketOwnerEnforced)"
		},
	},
	{
		name: "policy not public",
		run: func(ctx context.Context, b *bucket) (Status, string) {
			ps, err := b.c.GetBucketPolicyStatus(ctx, &s3.GetBucketPolicyStatusInput{Bucket: &b.name})
			if err == nil && ps.PolicyStatus != nil && aws.ToBool(ps.PolicyStatus.IsPublic) {
				return Fail, "the server rates the bucket policy as public"
			}
			doc, err := b.loadPolicy(ctx)
			if err != nil {
				return Fail, "cannot read the bucket policy: " + errText(err)
			}
			if sid, ok := doc.publicAllow(); ok {
				return Fail, fmt.Sprintf("statement %q allows everyone without a condition", sid)
			}
			return Pass, "no statement allows everyone"
		},
		howto: func(b *bucket) string {
			return "remove the Allow statements for Principal \"*\" from the bucket policy of " + b.name
		},
	},
	{
		name: "policy: TLS only",
		run: func(ctx context.Context, b *bucket) (Status, string) {
			doc, err := b.loadPolicy(ctx)
			if err != nil {
				return Fail, "cannot read the bucket policy: " + errText(err)
			}
			if sid, ok := doc.denies(b, "s3:GetObject", "Bool", "aws:SecureTransport", "false"); ok {
				return Pass, fmt.Sprintf("statement %q denies requests without TLS", sid)
			}
			if plainHTTP(b) {
				// Such a policy would refuse the gateway itself (and every
				// client of an http-only server).
				return Unsupported, "endpoint serves plain http: a TLS-only policy would lock every client out; serve https first"
			}
			return Fail, "no statement denies aws:SecureTransport = false"
		},
		fix:    func(ctx context.Context, b *bucket) error { return b.addPolicyStatements(ctx) },
		fixKey: "policy",
		howto: func(b *bucket) string {
			return "add to the bucket policy: " + string(mustJSON(denyInsecureTransport(b))) + " (or sftpgw check --fix)"
		},
	},
	{
		name: "policy: deny unencrypted uploads",
		run: func(ctx context.Context, b *bucket) (Status, string) {
			doc, err := b.loadPolicy(ctx)
			if err != nil {
				return Fail, "cannot read the bucket policy: " + errText(err)
			}
			if sid, ok := doc.denies(b, "s3:PutObject", "Null", "s3:x-amz-server-side-encryption", "true"); ok {
				return Pass, fmt.Sprintf("statement %q denies uploads without server-side encryption", sid)
			}
			if sid, ok := doc.deniesOtherSSE(b); ok {
				return Pass, fmt.Sprintf("statement %q denies uploads with other or no server-side encryption", sid)
			}
			return Fail, "no statement denies PutObject without x-amz-server-side-encryption"
		},
		fix:    func(ctx context.Context, b *bucket) error { return b.addPolicyStatements(ctx) },
		fixKey: "policy",
		howto: func(b *bucket) string {
			return "add to the bucket policy: " + string(mustJSON(denyUnencrypted(b))) + " (or sftpgw check --fix)"
		},
	},
	{
		// Without it whoever can write the audit bucket can delete its
		// newest batches; verification sees only a trail that ends early.
		name:    "audit object lock",
		applies: func(b *bucket) bool { return b.t.Audit },
		run: func(ctx context.Context, b *bucket) (Status, string) {
			out, err := b.c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &b.name})
			enabled := err == nil && out.ObjectLockConfiguration != nil &&
				out.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled
			switch {
			case notImplemented(err):
				return Unsupported, "GetObjectLockConfiguration not implemented"
			case err != nil && errCode(err) != "ObjectLockConfigurationNotFoundError":
				return Fail, "cannot read the Object Lock configuration: " + errText(err)
			case !enabled && !b.t.RequireLock:
				return Skipped, "Object Lock is off: whoever can write this bucket can delete its newest batches unseen; strict = true requires it"
			case !enabled:
				return Fail, "Object Lock is not enabled on the audit bucket"
			}
			d := "enabled"
			if r := out.ObjectLockConfiguration.Rule; r != nil && r.DefaultRetention != nil {
				d += fmt.Sprintf(", default retention %s %d day(s) %d year(s)", r.DefaultRetention.Mode,
					aws.ToInt32(r.DefaultRetention.Days), aws.ToInt32(r.DefaultRetention.Years))
			}
			if b.t.LockRetention > 0 {
				d += fmt.Sprintf("; batches are written in compliance mode for %s", b.t.LockRetention)
			} else if b.t.RequireLock {
				return Fail, d + "; but object_lock_retention is not set in the audit block: batches would not be locked in compliance mode"
			}
			return Pass, d
		},
		howto: func(b *bucket) string {
			return "Object Lock is set when a bucket is created: create the audit bucket with it (aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket; mc mb --with-lock) " +
				"and set object_lock_retention in the audit block"
		},
	},
	{
		name:    "MFA delete",
		applies: func(b *bucket) bool { return b.t.Files },
		run: func(ctx context.Context, b *bucket) (Status, string) {
			v, err := b.c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &b.name})
			switch {
			case notImplemented(err):
				return Unsupported, "GetBucketVersioning not implemented"
			case err != nil:
				return Fail, "cannot read versioning: " + errText(err)
			case v.MFADelete == types.MFADeleteStatusEnabled:
				return Pass, "enabled"
			case b.minio:
				return Unsupported, "MinIO has no MFA delete (use object locking or replication instead)"
			}
			return Fail, "MFA delete is off: one stolen key can erase every version"
		},
		howto: func(b *bucket) string {
			return "as the root account, with its MFA device: aws s3api put-bucket-versioning --bucket " + b.name +
				` --versioning-configuration Status=Enabled,MFADelete=Enabled --mfa "arn:aws:iam::ACCOUNT:mfa/root-account-mfa-device CODE" (cannot be automated)`
		},
	},
	{
		name:    "lifecycle expiration",
		applies: func(b *bucket) bool { return b.t.Retention > 0 },
		run: func(ctx context.Context, b *bucket) (Status, string) {
			rules, err := b.lifecycle(ctx)
			switch {
			case notImplemented(err):
				return Unsupported, "GetBucketLifecycleConfiguration not implemented"
			case err != nil:
				return Fail, "cannot read the lifecycle: " + errText(err)
			}
			want := ExpirationDays(b.t.Retention)
			for _, r := range rules {
				if wholeBucket(r) && r.Expiration != nil && r.Expiration.Days != nil && *r.Expiration.Days <= want {
					return Pass, fmt.Sprintf("rule %q expires objects after %d day(s)", aws.ToString(r.ID), *r.Expiration.Days)
				}
			}
			return Fail, fmt.Sprintf("no enabled whole-bucket rule expiring objects within %d day(s) (retention %s)", want, b.t.Retention)
		},
		fix:    func(ctx context.Context, b *bucket) error { return b.putLifecycle(ctx) },
		fixKey: "lifecycle",
		howto: func(b *bucket) string {
			return fmt.Sprintf("add a lifecycle rule: whole bucket, expiration %d day(s), noncurrent versions %d day(s), abort incomplete multipart uploads after 1 day (or sftpgw check --fix)",
				ExpirationDays(b.t.Retention), ExpirationDays(b.t.Retention))
		},
	},
	{
		// Every bucket: a gateway killed mid-upload leaves parts that only a
		// lifecycle rule removes.
		name:    "lifecycle aborts uploads",
		applies: func(b *bucket) bool { return true },
		run: func(ctx context.Context, b *bucket) (Status, string) {
			rules, err := b.lifecycle(ctx)
			switch {
			case notImplemented(err):
				return Unsupported, "GetBucketLifecycleConfiguration not implemented"
			case err != nil:
				return Fail, "cannot read the lifecycle: " + errText(err)
			}
			for _, r := range rules {
				if !wholeBucket(r) || r.AbortIncompleteMultipartUpload == nil {
					continue // MinIO, for one, returns rules without the element
				}
				if d := aws.ToInt32(r.AbortIncompleteMultipartUpload.DaysAfterInitiation); d > 0 {
					if d < AbortDays(b.t.ResumeWindow) {
						return Fail, fmt.Sprintf("rule %q aborts uploads after %d day(s), within resume_window %s: interrupted uploads would be lost before they can be resumed", aws.ToString(r.ID), d, b.t.ResumeWindow)
					}
					return Pass, fmt.Sprintf("rule %q aborts uploads after %d day(s)", aws.ToString(r.ID), aws.ToInt32(r.AbortIncompleteMultipartUpload.DaysAfterInitiation))
				}
			}
			if b.minio {
				return Unsupported, "MinIO ignores AbortIncompleteMultipartUpload (it removes stale uploads itself after 24h)"
			}
			return Fail, "no rule aborts incomplete multipart uploads"
		},
		fix:    func(ctx context.Context, b *bucket) error { return b.putLifecycle(ctx) },
		fixKey: "lifecycle",
		howto: func(b *bucket) string {
			return fmt.Sprintf("add AbortIncompleteMultipartUpload DaysAfterInitiation=%d to a whole-bucket lifecycle rule (or sftpgw check --fix)", AbortDays(b.t.ResumeWindow))
		},
	},
}

// AbortDays is the lifecycle age for incomplete multipart uploads: 1 day,
// or more than resume_window (a resumed upload's parts date from its
// first start, and the gateway's sweeper must act first).
func AbortDays(resumeWindow time.Duration) int32 {
	return max(1, int32(resumeWindow/(24*time.Hour))+1)
}

// ExpirationDays is the lifecycle expiration for a retention period: whole
// days, rounded up (S3 expires in days, at least one).
func ExpirationDays(d time.Duration) int32 {
	return int32(max(1, math.Ceil(d.Hours()/24)))
}

func wholeBucket(r types.LifecycleRule) bool {
	if r.Status != types.ExpirationStatusEnabled {
		return false
	}
	if r.Prefix != nil && *r.Prefix != "" {
		return false
	}
	f := r.Filter
	return f == nil || (aws.ToString(f.Prefix) == "" && f.Tag == nil && f.And == nil &&
		f.ObjectSizeGreaterThan == nil && f.ObjectSizeLessThan == nil)
}

func (b *bucket) lifecycle(ctx context.Context) ([]types.LifecycleRule, error) {
	l, err := b.c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &b.name})
	if errCode(err) == "NoSuchLifecycleConfiguration" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return l.Rules, nil
}

// putLifecycle installs (or replaces) the sftpgw rule, keeping other rules.
func (b *bucket) putLifecycle(ctx context.Context) error {
	rules, err := b.lifecycle(ctx)
	if err != nil {
		return err
	}
	days := ExpirationDays(b.t.Retention)
	keep := []types.LifecycleRule{}
	for _, r := range rules {
		if aws.ToString(r.ID) != lifecycleRuleID {
			keep = append(keep, r)
		}
	}
	rule := types.LifecycleRule{
		ID:                             aws.String(lifecycleRuleID),
		Status:                         types.ExpirationStatusEnabled,
		Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String("")},
		AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(AbortDays(b.t.ResumeWindow))},
	}
	if b.t.Retention > 0 {
		rule.Expiration = &types.LifecycleExpiration{Days: aws.Int32(days)}
		rule.NoncurrentVersionExpiration = &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(days)}
	}
	keep = append(keep, rule)
	_, err = b.c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: &b.name,
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: keep}})
	return err
}
