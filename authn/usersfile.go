package authn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/sftpgw/sftpgw/vfs"
)

// maxUsersFile bounds what is read into memory (a users file is small).
const maxUsersFile = 16 << 20

var usersSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "user", LabelNames: []string{"name"}}},
}

var userSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "role", Required: true},
		{Name: "keys"},
		{Name: "totp_secret"},
		{Name: "allow_from"},
		{Name: "disabled"},
		{Name: "expires_at"},
		{Name: "max_file_size"},
		{Name: "quota_bytes"},
		{Name: "quota_files"},
	},
}

// LoadUsers reads and validates a users file. The file holds TOTP seeds,
// so one that is group or world accessible is refused outright.
func LoadUsers(path string) (*UserSet, error) {
	set, _, err := loadUsersFile(path)
	return set, err
}

// loadUsersFile also returns the FileInfo of the file actually read, so a
// watcher compares against what was loaded, not against a later stat.
func loadUsersFile(path string) (*UserSet, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("users file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fi, fmt.Errorf("users file %s is not a regular file", path)
	}
	if err := checkPrivateMode(path, fi); err != nil {
		return nil, fi, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUsersFile+1))
	if err != nil {
		return nil, fi, fmt.Errorf("users file %s: %w", path, err)
	}
	if len(data) > maxUsersFile {
		return nil, fi, fmt.Errorf("users file %s is larger than %d bytes", path, maxUsersFile)
	}
	set, err := parseUsers(path, data)
	return set, fi, err
}

func checkPrivateMode(path string, fi os.FileInfo) error {
	if runtime.GOOS == "windows" { // no Unix permission bits to check
		return nil
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("users file %s has mode %04o but holds secrets: it must not be readable or writable by group or others (run: chmod 600 %s)", path, m, path)
	}
	return nil
}

// parseUsers decodes the HCL. Every problem is reported as "file:line: ..."
// and all of them are returned at once so an operator fixes a file in one go.
func parseUsers(filename string, data []byte) (*UserSet, error) {
	file, diags := hclsyntax.ParseConfig(data, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	content, diags := file.Body.Content(usersSchema)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	set := NewUserSet()
	var errs []error
	for _, b := range content.Blocks {
		u, err := decodeUser(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := set.Add(u); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at(b.DefRange), err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

func decodeUser(b *hcl.Block) (*User, error) {
	content, diags := b.Body.Content(userSchema)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	name := b.Labels[0]
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("%s: user: %w", at(b.LabelRanges[0]), err)
	}
	u := &User{Name: name}
	var errs []error
	fail := func(a *hcl.Attribute, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: user %q: %s", at(a.Expr.Range()), name, fmt.Sprintf(format, args...)))
	}
	decode := func(a *hcl.Attribute, target any) bool {
		if err := decodeAttr(name, a, target); err != nil {
			errs = append(errs, err)
			return false
		}
		return true
	}
	attrs := content.Attributes
	if a := attrs["role"]; decode(a, &u.Role) {
		if err := ValidateName(u.Role); err != nil {
			fail(a, "role: %v", err)
		}
	}
	if a, ok := attrs["keys"]; ok {
		var lines []string
		if decode(a, &lines) {
			for i, l := range lines {
				k, err := ParseKey(l)
				if err != nil {
					fail(a, "keys[%d]: %v", i, err)
					continue
				}
				u.Keys = append(u.Keys, k)
			}
		}
	}
	if a, ok := attrs["totp_secret"]; ok {
		var s string
		if decode(a, &s) {
			c, _, err := ParseTOTPSecret(s)
			if err != nil {
				fail(a, "%v", err) // the error never contains the secret
			}
			u.TOTPSecret = c
		}
	}
	if a, ok := attrs["allow_from"]; ok {
		var cidrs []string
		if decode(a, &cidrs) {
			for _, c := range cidrs {
				p, err := ParsePrefix(c)
				if err != nil {
					fail(a, "allow_from: %v", err)
					continue
				}
				u.AllowFrom = append(u.AllowFrom, p)
			}
		}
	}
	if a, ok := attrs["disabled"]; ok {
		decode(a, &u.Disabled)
	}
	if a, ok := attrs["expires_at"]; ok {
		var s string
		if decode(a, &s) && s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				fail(a, "expires_at: want an RFC 3339 time like 2026-12-31T00:00:00Z")
			}
			u.ExpiresAt = t
		}
	}
	// Limit overrides: sizes as "50MiB" (or a byte count), like the config.
	for _, sz := range []struct {
		name string
		dst  *int64
	}{{"max_file_size", &u.MaxFileSize}, {"quota_bytes", &u.QuotaBytes}} {
		if a, ok := attrs[sz.name]; ok {
			var s string
			if decode(a, &s) {
				n, err := vfs.ParseSize(s)
				if err != nil {
					fail(a, "%s: %v", sz.name, err)
				}
				*sz.dst = n
			}
		}
	}
	if a, ok := attrs["quota_files"]; ok {
		if decode(a, &u.QuotaFiles) && u.QuotaFiles < 0 {
			fail(a, "quota_files cannot be negative")
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return u, nil
}

// decodeAttr evaluates a literal attribute (no variables or functions: the
// users file is data) and converts it to target's Go type.
func decodeAttr(user string, a *hcl.Attribute, target any) error {
	val, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		return diagError(diags)
	}
	ty, err := gocty.ImpliedType(target)
	if err != nil {
		return err
	}
	if val.IsNull() || !val.IsWhollyKnown() {
		return fmt.Errorf("%s: user %q: %s: a value is required", at(a.Expr.Range()), user, a.Name)
	}
	if val, err = convert.Convert(val, ty); err == nil {
		err = gocty.FromCtyValue(val, target)
	}
	if err != nil {
		return fmt.Errorf("%s: user %q: %s: want %s: %v", at(a.Expr.Range()), user, a.Name, ty.FriendlyName(), err)
	}
	return nil
}

func at(r hcl.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

// diagError renders every diagnostic as "file:line: summary: detail".
func diagError(diags hcl.Diagnostics) error {
	var errs []error
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			msg = at(*d.Subject) + ": " + msg
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

// SaveUsers writes set to path atomically (a 0600 temporary file renamed
// over the old one), so the gateway's watcher never reads a half-written
// file. If the old file parses, it is edited in place: comments and the
// order of existing users survive; new users are appended.
func SaveUsers(path string, set *UserSet) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real // replace the file a symlink points at, not the link
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("users file: %w", err)
	}
	return writeFileAtomic(path, renderUsers(path, old, set))
}

const usersHeader = `# sftpgw users. This file holds TOTP secrets: keep it mode 0600.
# Edit with "sftpgw user ..." or by hand; the gateway reloads it on change.
`

// renderUsers produces the new file. When the old file parses, it is
// edited rather than regenerated: text between blocks (comments) and the
// exact text of unchanged users survive, changed users are rewritten in
// place, removed users disappear with their lead comments, and new users
// are appended in name order.
func renderUsers(filename string, old []byte, set *UserSet) []byte {
	var out bytes.Buffer
	file, diags := hclsyntax.ParseConfig(old, filename, hcl.InitialPos)
	body, ok := file.Body.(*hclsyntax.Body)
	if len(bytes.TrimSpace(old)) == 0 || diags.HasErrors() || !ok {
		out.WriteString(usersHeader)
		for _, u := range set.Users() {
			out.WriteString("\n")
			out.WriteString(formatUser(u))
		}
		return out.Bytes()
	}
	done := map[string]bool{}
	pos := 0
	for _, b := range body.Blocks {
		if b.Type != "user" || len(b.Labels) != 1 {
			continue // cannot be in a loadable file; left untouched
		}
		start, end := b.Range().Start.Byte, b.Range().End.Byte
		name := b.Labels[0]
		u, keep := set.Lookup(name)
		if !keep || done[name] {
			out.Write(old[pos:leadCommentStart(old, start)])
			pos = skipLineEnd(old, end)
			if bytes.HasSuffix(out.Bytes(), []byte("\n\n")) && pos < len(old) && old[pos] == '\n' {
				pos++ // do not leave a growing run of blank lines behind
			}
			continue
		}
		done[name] = true
		out.Write(old[pos:start])
		text := strings.TrimSuffix(formatUser(u), "\n")
		if prev, err := decodeUser(b.AsHCLBlock()); err == nil && strings.TrimSuffix(formatUser(prev), "\n") == text {
			text = string(old[start:end]) // unchanged: keep the operator's formatting and comments
		}
		out.WriteString(text)
		pos = end
	}
	out.Write(old[pos:])
	for _, u := range set.Users() {
		if done[u.Name] {
			continue
		}
		if !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
			out.WriteString("\n")
		}
		out.WriteString("\n")
		out.WriteString(formatUser(u))
	}
	return out.Bytes()
}

// leadCommentStart moves start back over the comment lines directly above
// a block (no blank line in between): they describe that block.
func leadCommentStart(src []byte, start int) int {
	lineStart := bytes.LastIndexByte(src[:start], '\n') + 1
	if strings.TrimSpace(string(src[lineStart:start])) != "" {
		return start // something else precedes the block on its line
	}
	for lineStart > 0 {
		prevStart := bytes.LastIndexByte(src[:lineStart-1], '\n') + 1
		line := strings.TrimSpace(string(src[prevStart : lineStart-1]))
		if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "//") {
			break
		}
		lineStart = prevStart
	}
	return lineStart
}

// skipLineEnd returns the offset after trailing blanks and one newline.
func skipLineEnd(src []byte, end int) int {
	for end < len(src) && (src[end] == ' ' || src[end] == '\t' || src[end] == '\r') {
		end++
	}
	if end < len(src) && src[end] == '\n' {
		end++
	}
	return end
}

// formatUser writes one user block the way "terraform fmt" would; optional
// attributes at their default are omitted to keep the file short.
func formatUser(u *User) string {
	type attr struct{ name, value string }
	keys := make([]string, len(u.Keys))
	for i, k := range u.Keys {
		keys[i] = k.String()
	}
	attrs := []attr{{"role", hclQuote(u.Role)}, {"keys", hclList(keys)}}
	if u.TOTPSecret != "" {
		attrs = append(attrs, attr{"totp_secret", hclQuote(u.TOTPSecret)})
	}
	if len(u.AllowFrom) > 0 {
		cidrs := make([]string, len(u.AllowFrom))
		for i, p := range u.AllowFrom {
			cidrs[i] = p.String()
		}
		attrs = append(attrs, attr{"allow_from", hclList(cidrs)})
	}
	if u.Disabled {
		attrs = append(attrs, attr{"disabled", "true"})
	}
	if !u.ExpiresAt.IsZero() {
		attrs = append(attrs, attr{"expires_at", hclQuote(u.ExpiresAt.UTC().Format(time.RFC3339))})
	}
	if u.MaxFileSize > 0 {
		attrs = append(attrs, attr{"max_file_size", hclQuote(exactSize(u.MaxFileSize))})
	}
	if u.QuotaBytes > 0 {
		attrs = append(attrs, attr{"quota_bytes", hclQuote(exactSize(u.QuotaBytes))})
	}
	if u.QuotaFiles > 0 {
		attrs = append(attrs, attr{"quota_files", fmt.Sprint(u.QuotaFiles)})
	}
	width := 0
	for _, a := range attrs {
		width = max(width, len(a.name))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "user %s {\n", hclQuote(u.Name))
	for _, a := range attrs {
		fmt.Fprintf(&b, "  %-*s = %s\n", width, a.name, a.value)
	}
	b.WriteString("}\n")
	return b.String()
}

// exactSize writes a size in the largest binary unit that divides it, so
// the file reads "50MiB" and parses back to the same number.
func exactSize(n int64) string {
	for _, u := range []struct {
		suf string
		mul int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n%u.mul == 0 {
			return fmt.Sprintf("%d%s", n/u.mul, u.suf)
		}
	}
	return fmt.Sprint(n)
}

// hclList renders a list of strings, one element per line when there is
// more than one: keys are long and diffs stay readable.
func hclList(items []string) string {
	switch len(items) {
	case 0:
		return "[]"
	case 1:
		return "[" + hclQuote(items[0]) + "]"
	}
	var b strings.Builder
	b.WriteString("[\n")
	for _, s := range items {
		b.WriteString("    " + hclQuote(s) + ",\n")
	}
	b.WriteString("  ]")
	return b.String()
}

// hclQuote writes an HCL quoted string literal. Besides the usual escapes,
// "${" and "%{" must be doubled or HCL would read a template sequence (a
// key comment is free text).
func hclQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteRune(r)
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeFileAtomic replaces path with data: temp file in the same directory
// (mode 0600, same owner as the old file so a gateway running as another
// user can still read it), fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if fi, serr := os.Stat(path); serr == nil {
		if err = copyOwner(tmp, fi); err != nil {
			return fmt.Errorf("users file %s: keeping its owner: %w", path, err)
		}
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable; best effort
		_ = d.Sync()
		d.Close()
	}
	return nil
}
