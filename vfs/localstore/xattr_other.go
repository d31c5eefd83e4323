//go:build !(linux || darwin)

package localstore

import "os"

func setXattr(*os.File, string, []byte) error   { return errNoXattr }
func getXattr(*os.File, string) ([]byte, error) { return nil, errNoXattr }
