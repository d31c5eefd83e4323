package vfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits bound what a session may store under its home. A zero field means
// "no limit". They are enforced on uploads (OpenWrite and the Writer) and on
// renames (a file may not change its type by a new extension).
type Limits struct {
	MaxFileSize int64 // bytes per file
	QuotaBytes  int64 // bytes of all files under the home
	QuotaFiles  int64 // files under the home (directory markers do not count)
	// AllowedTypes names the accepted file types (see FileTypes). A file
	// must carry one of their extensions AND start with the matching
	// content; empty accepts anything.
	AllowedTypes []string
}

// IsZero reports whether l limits nothing.
func (l Limits) IsZero() bool {
	return l.MaxFileSize == 0 && l.QuotaBytes == 0 && l.QuotaFiles == 0 && len(l.AllowedTypes) == 0
}

func (l Limits) hasQuota() bool { return l.QuotaBytes > 0 || l.QuotaFiles > 0 }

// String is a one-line summary for operators ("max file 50 MiB, ...").
func (l Limits) String() string {
	var parts []string
	if l.MaxFileSize > 0 {
		parts = append(parts, "max file "+FormatSize(l.MaxFileSize))
	}
	if l.QuotaBytes > 0 {
		parts = append(parts, "quota "+FormatSize(l.QuotaBytes))
	}
	if l.QuotaFiles > 0 {
		parts = append(parts, fmt.Sprintf("at most %d files", l.QuotaFiles))
	}
	if len(l.AllowedTypes) > 0 {
		parts = append(parts, "types "+strings.Join(l.AllowedTypes, ", "))
	}
	if len(parts) == 0 {
		return "no limits"
	}
	return strings.Join(parts, "; ")
}

// fileType is one accepted kind of document: its extensions and a check
// of the first bytes, because an extension alone is a claim, not a fact.
type fileType struct {
	name string
	desc string   // for messages: "a PDF document"
	exts []string // lower case, with the dot
	// need is how many leading bytes check wants; a shorter file is
	// checked once complete.
	need  int
	check func(head []byte, complete bool) bool
}

var (
	magicPDF  = []byte("%PDF-")
	magicJPEG = []byte{0xFF, 0xD8, 0xFF}
	magicPNG  = []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'}
	magicZIP  = []byte("PK\x03\x04")
)

// textSniffLen is how much of a .txt file must be clean UTF-8 without NUL.
const textSniffLen = 8 << 10

// odtSniffLen covers the zip header of the "mimetype" entry ODF writers
// put first (30 bytes + name + a small extra field + the 39-byte type).
const odtSniffLen = 256

var fileTypes = []fileType{
	{name: "pdf", desc: "a PDF document", exts: []string{".pdf"}, need: len(magicPDF), check: prefix(magicPDF)},
	{name: "jpeg", desc: "a JPEG image", exts: []string{".jpg", ".jpeg"}, need: len(magicJPEG), check: prefix(magicJPEG)},
	{name: "png", desc: "a PNG image", exts: []string{".png"}, need: len(magicPNG), check: prefix(magicPNG)},
	{name: "docx", desc: "a Word (DOCX) document", exts: []string{".docx"}, need: len(magicZIP), check: prefix(magicZIP)},
	{name: "xlsx", desc: "an Excel (XLSX) workbook", exts: []string{".xlsx"}, need: len(magicZIP), check: prefix(magicZIP)},
	{name: "odt", desc: "an OpenDocument text", exts: []string{".odt"}, need: odtSniffLen, check: isODT},
	{name: "txt", desc: "a plain UTF-8 text", exts: []string{".txt"}, need: textSniffLen, check: isText},
}

// FileTypes lists the type names AllowedTypes may use.
func FileTypes() []string {
	out := make([]string, len(fileTypes))
	for i, t := range fileTypes {
		out[i] = t.name
	}
	return out
}

// ValidateFileTypes checks type names (case-insensitive) and returns them
// in canonical (lower case) form.
func ValidateFileTypes(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if lookupType(n) == nil {
			return nil, fmt.Errorf("unknown file type %q (known: %s)", n, strings.Join(FileTypes(), ", "))
		}
		out = append(out, n)
	}
	return out, nil
}

func lookupType(name string) *fileType {
	for i := range fileTypes {
		if fileTypes[i].name == name {
			return &fileTypes[i]
		}
	}
	return nil
}

// typeFor returns the allowed type a file name claims by its extension,
// nil when any type is allowed, or a LimitError.
func (l Limits) typeFor(vpath string) (*fileType, error) {
	if len(l.AllowedTypes) == 0 {
		return nil, nil
	}
	ext := strings.ToLower(path.Ext(vpath))
	for _, n := range l.AllowedTypes {
		if t := lookupType(n); t != nil {
			for _, e := range t.exts {
				if e == ext {
					return t, nil
				}
			}
		}
	}
	what := "files without an extension are"
	if ext != "" {
		what = ext + " files are"
	}
	return nil, &LimitError{Reason: fmt.Sprintf("upload refused: %s not accepted (allowed: %s)", what, l.allowedExts())}
}

func (l Limits) allowedExts() string {
	var exts []string
	for _, n := range l.AllowedTypes {
		if t := lookupType(n); t != nil {
			exts = append(exts, t.exts...)
		}
	}
	return strings.Join(exts, " ")
}

func prefix(magic []byte) func([]byte, bool) bool {
	return func(head []byte, _ bool) bool { return bytes.HasPrefix(head, magic) }
}

// isText accepts valid UTF-8 without NUL. A head cut off in the middle of
// a multi-byte character is fine as long as the file goes on.
func isText(head []byte, complete bool) bool {
	if bytes.IndexByte(head, 0) >= 0 {
		return false
	}
	if !complete {
		// Drop an incomplete trailing character (at most 3 bytes).
		for i := 1; i < utf8.UTFMax && i <= len(head); i++ {
			if !utf8.RuneStart(head[len(head)-i]) {
				continue
			}
			if !utf8.FullRune(head[len(head)-i:]) {
				head = head[:len(head)-i]
			}
			break
		}
	}
	return utf8.Valid(head)
}

// isODT checks the zip signature and, when the first entry is the stored
// "mimetype" file ODF writers put there, that it names a text document
// (not a spreadsheet or something else renamed .odt).
func isODT(head []byte, _ bool) bool {
	if !bytes.HasPrefix(head, magicZIP) {
		return false
	}
	if len(head) < 30 {
		return true // a zip too short to say more; the zip magic is all we check
	}
	method := binary.LittleEndian.Uint16(head[8:])
	size := int(binary.LittleEndian.Uint32(head[18:]))
	nameLen := int(binary.LittleEndian.Uint16(head[26:]))
	extraLen := int(binary.LittleEndian.Uint16(head[28:]))
	nameEnd := 30 + nameLen
	if nameEnd > len(head) || string(head[30:nameEnd]) != "mimetype" || method != 0 {
		return true // no leading mimetype entry: cannot say more cheaply
	}
	start := nameEnd + extraLen
	if start+size > len(head) {
		return true // an unusually large extra field: beyond the cheap check
	}
	return strings.HasPrefix(string(head[start:start+size]), "application/vnd.oasis.opendocument.text")
}

// sniffer collects the first bytes of an upload and checks them against
// the type its name claims.
type sniffer struct {
	t       *fileType
	head    []byte
	decided bool
}

// add feeds the next sequential bytes; it returns a LimitError as soon as
// enough bytes are in to tell that the content does not match.
func (s *sniffer) add(p []byte, name string) error {
	if s == nil || s.decided {
		return nil
	}
	if n := s.t.need - len(s.head); n > 0 {
		s.head = append(s.head, p[:min(n, len(p))]...)
	}
	if len(s.head) < s.t.need {
		return nil
	}
	return s.decide(false, name)
}

// finish decides with whatever arrived, for files shorter than need.
func (s *sniffer) finish(name string) error {
	if s == nil || s.decided {
		return nil
	}
	return s.decide(true, name)
}

func (s *sniffer) decide(complete bool, name string) error {
	s.decided = true
	ok := s.t.check(s.head, complete)
	s.head = nil
	if ok {
		return nil
	}
	return &LimitError{Reason: fmt.Sprintf("upload refused: the content of %s is not %s", base(name), s.t.desc)}
}

// FormatSize renders a byte count the way limits are written ("50 MiB").
func FormatSize(n int64) string {
	units := []struct {
		suf string
		mul int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n >= u.mul {
			if n%u.mul == 0 {
				return fmt.Sprintf("%d %s", n/u.mul, u.suf)
			}
			return strconv.FormatFloat(float64(n)/float64(u.mul), 'f', 1, 64) + " " + u.suf
		}
	}
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}

// ParseSize parses "50MiB", "1GiB", "512KiB", "100MB", "1234" (bytes). It
// is the same syntax as the configuration's sizes, for the users file.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suf string
		mul int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	t := strings.TrimSpace(s)
	mul := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suf) {
			t, mul = strings.TrimSpace(strings.TrimSuffix(t, u.suf)), u.mul
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mul {
		return 0, fmt.Errorf("%q is not a size like \"50MiB\" or \"1GiB\"", s)
	}
	return n * mul, nil
}
