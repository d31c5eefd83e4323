//go:build !unix

package authn

import "os"

// copyOwner is a no-op where files have no Unix owner.
func copyOwner(*os.File, os.FileInfo) error { return nil }
