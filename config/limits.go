package config

import (
	"fmt"

	"github.com/sftpgw/sftpgw/vfs"
)

// roleLimits validates a role's upload limits: sizes like "50MiB", a file
// count, and type names from vfs.FileTypes.
func roleLimits(r RoleBlock) (vfs.Limits, error) {
	var l vfs.Limits
	var err error
	if r.MaxFileSize != "" {
		if l.MaxFileSize, err = vfs.ParseSize(r.MaxFileSize); err != nil {
			return l, fmt.Errorf("max_file_size: %v", err)
		}
	}
	if r.QuotaBytes != "" {
		if l.QuotaBytes, err = vfs.ParseSize(r.QuotaBytes); err != nil {
			return l, fmt.Errorf("quota_bytes: %v", err)
		}
	}
	if r.QuotaFiles < 0 {
		return l, fmt.Errorf("quota_files: %d is negative (0 means no limit)", r.QuotaFiles)
	}
	l.QuotaFiles = r.QuotaFiles
	if l.AllowedTypes, err = vfs.ValidateFileTypes(r.AllowedTypes); err != nil {
		return l, fmt.Errorf("allowed_types: %v", err)
	}
	return l, nil
}
