package vfs

import (
	"errors"
	"strings"
	"testing"
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
	}
	for in, want := range ok {
		got, err := CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"a\x00b", `a\b`, `..\..\x`, "a\nb", "a\x7fb", "\xff\xfe", "trailing /x",
		"/x/ leading", strings.Repeat("a", 256), "/" + strings.Repeat("abcdefgh/", 80),
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
	for _, s := range []string{"/a/b", "../..", "a\x00", `\\x`, "/./../.."} {
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
		again, err := CleanPath(vp)
		if err != nil || again != vp {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", in, vp, again, err)
		}
	})
}
