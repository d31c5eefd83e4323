package vfs

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Limits on names, chosen so every mapped key is a valid S3 key (<= 1024
// bytes) and every component is a valid file name on common clients.
const (
	maxComponentLen = 255
	maxKeyLen       = 1024
)

// InvalidPathError explains why a client path was refused. It reaches the
// client as an SFTP failure with this text, so it must stay short and safe.
type InvalidPathError struct{ Reason string }

func (e *InvalidPathError) Error() string { return "invalid file name: " + e.Reason }

func invalid(reason string) error { return &InvalidPathError{Reason: reason} }

// CleanPath turns a client path into a clean absolute virtual path ("/" or
// "/a/b"). Relative paths are taken from "/" (every session starts at its
// home); ".." never climbs above "/", the way a chroot behaves. Names that
// could mean something else to the store or to another client (NUL,
// backslash, control characters, invalid UTF-8, trailing spaces) are refused
// instead of silently rewritten, so two different client names never map to
// one key. So are characters that make a name display as another one
// (bidirectional overrides and isolates). Names are stored in Unicode NFC,
// so "é" typed as one code point (Windows, Linux) or as "e" plus a combining
// accent (macOS) is one file (see docs/names.md).
func CleanPath(p string) (string, error) {
	if !utf8.ValidString(p) {
		return "", invalid("not valid UTF-8")
	}
	for _, r := range p {
		switch {
		case r == 0:
			return "", invalid("contains NUL")
		case r == '\\':
			return "", invalid(`contains a backslash`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return "", invalid("contains a control character")
		case (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			// "cv\u202Efdp.exe" displays as "cvexe.pdf".
			return "", invalid("contains a bidirectional text control character")
		}
	}
	p = norm.NFC.String(p)
	parts := strings.Split(p, "/")
	out := make([]string, 0, len(parts))
	for _, c := range parts {
		switch c {
		case "", ".":
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		if len(c) > maxComponentLen {
			return "", invalid("a name is longer than 255 bytes")
		}
		if strings.HasSuffix(c, " ") || strings.HasPrefix(c, " ") {
			return "", invalid("a name starts or ends with a space")
		}
		out = append(out, c)
	}
	clean := "/" + strings.Join(out, "/")
	if len(clean) > maxKeyLen/2 {
		// Half the key budget: the home prefix and a ".filepart" suffix must still fit.
		return "", invalid("path is too long")
	}
	return clean, nil
}

// keyFor maps a clean virtual path onto the object key below home.
// "/" maps to home itself (which may be "" for a bucket-root role).
func keyFor(home, vpath string) string {
	return home + strings.TrimPrefix(vpath, "/")
}

// dirKey is the marker/prefix key for a directory at key ("" stays "").
func dirKey(key string) string {
	if key == "" || strings.HasSuffix(key, "/") {
		return key
	}
	return key + "/"
}

// parent returns the parent virtual path of a clean virtual path.
func parent(vpath string) string {
	i := strings.LastIndexByte(vpath, '/')
	if i <= 0 {
		return "/"
	}
	return vpath[:i]
}

// base returns the last element of a clean virtual path ("/" for the root).
func base(vpath string) string {
	if vpath == "/" {
		return "/"
	}
	return vpath[strings.LastIndexByte(vpath, '/')+1:]
}
