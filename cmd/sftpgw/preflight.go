package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/posture"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// usersFileReady fails with the command to run when the users file is
// missing: a gateway without users lets nobody in, and an empty file made
// behind the operator's back would hide a wrong users_file path.
func usersFileReady(cfg *config.Config) error {
	_, err := os.Stat(cfg.UsersFile)
	if !errors.Is(err, os.ErrNotExist) {
		return nil // other problems are reported, with detail, by the loader
	}
	return fmt.Errorf("users file %s does not exist; add the first user with\n"+
		"  sftpgw user add --config %s --role ROLE --key KEY.pub\n"+
		"or start with no users: install -m 600 /dev/null %s", cfg.UsersFile, cfg.Path, cfg.UsersFile)
}

// reachStorage asks each s3 bucket one HeadBucket with the credentials the
// gateway has and, when that fails, says which of credentials, endpoint,
// region or bucket is the problem: the SDK's own error buries it.
func reachStorage(ctx context.Context, cfg *config.Config, names ...string) error {
	if len(names) == 0 {
		for n := range cfg.Storage {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	var errs []error
	for _, name := range names {
		s, ok := cfg.Storage[name]
		if !ok || s.Type != "s3" {
			continue
		}
		c, err := s3store.NewClient(ctx, posture.S3Config(s))
		if err == nil {
			_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.Bucket})
		}
		if err != nil {
			where := "AWS S3"
			if s.Endpoint != "" {
				where = s.Endpoint
			}
			errs = append(errs, fmt.Errorf("storage %q: bucket %s at %s: %s", name, s.Bucket, where, storageProblem(err)))
		}
	}
	return errors.Join(errs...)
}

// storageProblem names the cause of a failed request and what to change.
func storageProblem(err error) string {
	msg := err.Error()
	var api smithy.APIError
	var ne net.Error
	var oe *net.OpError
	switch {
	case strings.Contains(msg, "get credentials") || strings.Contains(msg, "NoCredentialProviders"):
		return "no credentials found (a credentials problem): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY " +
			"(MinIO and other S3-compatible stores), or AWS_PROFILE, or run with an IAM role"
	case errors.As(err, &api):
		switch api.ErrorCode() {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken":
			return "the endpoint rejected the credentials (" + api.ErrorCode() + "): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
		case "Forbidden", "AccessDenied":
			return "access denied (a credentials problem): the credentials are wrong or lack s3:ListBucket on this bucket"
		case "NotFound", "NoSuchBucket":
			return "the bucket does not exist: create it (see docs/deploy-s3.md, or sftpgw check --fix)"
		case "MovedPermanently", "PermanentRedirect", "AuthorizationHeaderMalformed", "301":
			return "wrong region: set region to the bucket's region (" + api.ErrorCode() + ")"
		}
		return "request refused (" + api.ErrorCode() + "): check the credentials, region and endpoint"
	case errors.As(err, &oe) || errors.As(err, &ne):
		return "endpoint unreachable (an endpoint problem: " + oneLine(err) + "): check endpoint and that the store is running"
	}
	return oneLine(err) + ": check the credentials, region and endpoint"
}

// oneLine keeps the innermost cause of a wrapped SDK error.
func oneLine(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	return err.Error()
}
