package vfs

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

func TestCleanPath(t *testing.T) {
	ok := map[string]string{
		"":                  "/",
		"/":                 "/",
		".":                 "/",
		"a":                 "/a",
		"/a/b/":             "/a/b",
		"//a//b":            "/a/b",
		"/../../etc/passwd": "/etc/passwd",
		"a/../../b":         "/b",
		"./a/./b/..":        "/a",
		"/a/.../b":          "/a/.../b",
		"/ünïcode/文件.pdf":   "/ünïcode/文件.pdf",
		"/a b/c":            "/a b/c",
		// NFD (macOS) and NFC (Windows, Linux) spellings are one name.
		"/Re\u0301sume\u0301.pdf":       "/R\u00e9sum\u00e9.pdf",
		"/R\u00e9sum\u00e9.pdf":         "/R\u00e9sum\u00e9.pdf",
		"/Ame\u0301lie/x/../cv":         "/Am\u00e9lie/cv",
		"/\u05e9\u05dc\u05d5\u05dd.txt": "/\u05e9\u05dc\u05d5\u05dd.txt", // right-to-left letters are fine
		"/a\u200db":                     "/a\u200db",                     // ZWJ (emoji sequences) is fine
	}
	// A name of 255 bytes is the longest accepted (256: below).
	ok["/"+strings.Repeat("a", 255)] = "/" + strings.Repeat("a", 255)
	// A path of 512 bytes (half the key budget) is the longest accepted.
	long := "/" + strings.Repeat("a", 255) + "/" + strings.Repeat("b", 255)
	ok[long] = long
	for in, want := range ok {
		got, err := CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"a\x00b", `a\b`, `..\..\x`, "a\nb", "a\x7fb", "\xff\xfe", "trailing /x",
		"/x/ leading", strings.Repeat("a", 256), "/" + strings.Repeat("abcdefgh/", 80), long + "/c",
		// C1 controls.
		"a\u0080b", "a\u0085b", "a\u009fb",
		// Bidirectional overrides and isolates: "cv\u202efdp.exe.pdf" shows as "cvexe.pdf...".
		"cv\u202efdp.exe.pdf", "a\u202ab", "a\u202bb", "a\u202cb", "a\u202db",
		"a\u2066b", "a\u2067b", "a\u2068b", "a\u2069b",
	}
	for _, in := range bad {
		got, err := CleanPath(in)
		var ipe *InvalidPathError
		if err == nil || !errors.As(err, &ipe) {
			t.Errorf("CleanPath(%q) = %q, %v; want InvalidPathError", in, got, err)
		}
	}
}

func TestKeyMappingStaysInHome(t *testing.T) {
	home := "user/u12fx/"
	for _, in := range []string{"..", "../u99zz/x", "/../../..//u99zz", "a/../../../b"} {
		vp, err := CleanPath(in)
		if err != nil {
			t.Fatal(err)
		}
		if k := keyFor(home, vp); !strings.HasPrefix(k, home) {
			t.Errorf("%q mapped to %q outside %q", in, k, home)
		}
	}
	if k := keyFor(home, "/"); k != home {
		t.Errorf("root maps to %q", k)
	}
	if parent("/a/b") != "/a" || parent("/a") != "/" || base("/a/b") != "b" {
		t.Error("parent/base")
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/a/b", "../..", "a\x00", `\\x`, "/./../..", "e\u0301/\u0301", "cv\u202efdp.exe", "a\u0085"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		vp, err := CleanPath(in)
		if err != nil {
			return
		}
		k := keyFor("user/x/", vp)
		if !strings.HasPrefix(k, "user/x/") || strings.Contains(k, "/../") || strings.Contains(k, "//") ||
			strings.HasSuffix(k, "/..") || strings.ContainsAny(k, "\x00\\") {
			t.Fatalf("%q -> %q escapes or is unclean", in, k)
		}
		if !norm.NFC.IsNormalString(vp) {
			t.Fatalf("%q -> %q is not NFC", in, vp)
		}
		for _, r := range vp {
			if (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r < 0x20 {
				t.Fatalf("%q -> %q keeps %U", in, vp, r)
			}
		}
		again, err := CleanPath(vp)
		if err != nil || again != vp {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", in, vp, again, err)
		}
	})
}
