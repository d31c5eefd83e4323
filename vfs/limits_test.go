package vfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// zipWithFirst builds the start of a zip file whose first entry is name,
// stored, with content (what ODF writers put first: "mimetype").
func zipWithFirst(name, content string, extra int) []byte {
	var b bytes.Buffer
	b.WriteString("PK\x03\x04")
	hdr := make([]byte, 26)
	binary.LittleEndian.PutUint16(hdr[0:], 10)                    // version
	binary.LittleEndian.PutUint16(hdr[4:], 0)                     // method: stored
	binary.LittleEndian.PutUint32(hdr[14:], uint32(len(content))) // compressed size
	binary.LittleEndian.PutUint32(hdr[18:], uint32(len(content))) // size
	binary.LittleEndian.PutUint16(hdr[22:], uint16(len(name)))
	binary.LittleEndian.PutUint16(hdr[24:], uint16(extra))
	b.Write(hdr)
	b.WriteString(name)
	b.Write(make([]byte, extra))
	b.WriteString(content)
	b.WriteString("PK\x03\x04 more entries follow")
	return b.Bytes()
}

func TestSniff(t *testing.T) {
	elf := []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	long := func(s string) []byte { return []byte(strings.Repeat(s, textSniffLen/len(s)+10)) }
	// "é" is 2 bytes; cut the text so the sniff window ends inside one.
	cut := append(bytes.Repeat([]byte("a"), textSniffLen-1), "é and more"...)
	cases := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"a.pdf", []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), true},
		{"a.PDF", []byte("%PDF-1.4"), true},
		{"a.pdf", elf, false},
		{"a.pdf", []byte("%PDF"), false}, // too short to be a PDF
		{"a.pdf", nil, false},
		{"a.jpg", []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'}, true},
		{"a.jpeg", []byte{0xFF, 0xD8, 0xFF, 0xDB}, true},
		{"a.jpg", []byte("\x89PNG\r\n\x1a\n...."), false},
		{"a.png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), true},
		{"a.png", []byte("\x89PNG\r\n"), false},
		{"a.docx", zipWithFirst("[Content_Types].xml", "<?xml?>", 0), true},
		{"a.xlsx", zipWithFirst("_rels/.rels", "<?xml?>", 0), true},
		{"a.docx", elf, false},
		{"a.odt", zipWithFirst("mimetype", "application/vnd.oasis.opendocument.text", 0), true},
		{"a.odt", zipWithFirst("mimetype", "application/vnd.oasis.opendocument.text", 28), true},
		{"a.odt", zipWithFirst("mimetype", "application/vnd.oasis.opendocument.spreadsheet", 0), false},
		{"a.odt", zipWithFirst("content.xml", "<x/>", 0), true}, // no leading mimetype: zip magic only
		{"a.odt", []byte("PK\x05\x06"), false},
		{"a.txt", []byte("Dear HR,\nattached my CV. Grüße, 日本\n"), true},
		{"a.txt", nil, true},
		{"a.txt", long("line of text\n"), true},
		{"a.txt", cut, true},
		{"a.txt", []byte("abc\x00def"), false},
		{"a.txt", append(long("x"), 0), true}, // a NUL after the sniffed 8 KiB is not looked at
		{"a.txt", []byte("abc\xff"), false},
		{"a.txt", []byte("abc\xc3"), false}, // a character cut off at the end of the file
		{"a.txt", elf, false},
	}
	all := Limits{AllowedTypes: FileTypes()}
	for i, c := range cases {
		ft, err := all.typeFor("/" + c.name)
		if err != nil {
			t.Fatalf("%d %s: %v", i, c.name, err)
		}
		// Feed in small pieces, the way writes arrive, then finish.
		s := &sniffer{t: ft}
		var got error
		for off := 0; off < len(c.data) && got == nil; off += 7 {
			got = s.add(c.data[off:min(off+7, len(c.data))], "/"+c.name)
		}
		if got == nil {
			got = s.finish("/" + c.name)
		}
		var le *LimitError
		if c.ok && got != nil {
			t.Errorf("%d %s: refused: %v", i, c.name, got)
		} else if !c.ok && !errors.As(got, &le) {
			t.Errorf("%d %s: accepted (%v)", i, c.name, got)
		}
	}
}

// TestSniffDecidesEarly: the check fires once enough bytes are in, before
// the upload ends, so a large disguised file is stopped at its start.
func TestSniffDecidesEarly(t *testing.T) {
	l := Limits{AllowedTypes: []string{"pdf", "txt"}}
	ft, _ := l.typeFor("/x.pdf")
	s := &sniffer{t: ft}
	if err := s.add([]byte("\x7fEL"), "/x.pdf"); err != nil {
		t.Fatalf("decided on 3 bytes: %v", err)
	}
	if err := s.add([]byte("F\x02\x01"), "/x.pdf"); err == nil || !strings.Contains(err.Error(), "is not a PDF document") {
		t.Fatalf("err = %v", err)
	}
	ft, _ = l.typeFor("/x.txt")
	s = &sniffer{t: ft}
	if err := s.add(bytes.Repeat([]byte("a"), textSniffLen-1), "/x.txt"); err != nil || s.decided {
		t.Fatalf("decided early: %v", err)
	}
	if err := s.add([]byte("\x00"), "/x.txt"); err == nil {
		t.Fatal("NUL at byte 8191 accepted")
	}
}

func TestTypeFor(t *testing.T) {
	l := Limits{AllowedTypes: []string{"pdf", "jpeg", "txt"}}
	for _, ok := range []string{"/a.pdf", "/dir/B.PDF", "/x.jpg", "/x.JPEG", "/notes.txt", "/a.exe.pdf"} {
		if _, err := l.typeFor(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"/a.exe", "/a.pdf.exe", "/README", "/a.png", "/a.docx", "/.pdf.", "/pdf"} {
		_, err := l.typeFor(bad)
		var le *LimitError
		if !errors.As(err, &le) {
			t.Errorf("%s accepted", bad)
			continue
		}
		if !strings.Contains(le.Reason, "allowed: .pdf .jpg .jpeg .txt") {
			t.Errorf("%s: message %q does not list the allowed types", bad, le.Reason)
		}
	}
	if _, err := l.typeFor("/a.exe"); !strings.Contains(err.Error(), ".exe files are not accepted") {
		t.Errorf("message: %v", err)
	}
	if ft, err := (Limits{}).typeFor("/a.exe"); ft != nil || err != nil {
		t.Errorf("no allow list: %v %v", ft, err)
	}
}

func TestRenameType(t *testing.T) {
	l := Limits{AllowedTypes: []string{"pdf", "jpeg", "txt"}}
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"/a.pdf", "/b.pdf", true},
		{"/a.jpg", "/a.jpeg", true},
		{"/a.pdf", "/dir/a.PDF", true},
		{"/a.txt", "/a.bat", false},
		{"/a.txt", "/a.pdf", false},
		{"/a.pdf", "/a", false},
		{"/legacy.bin", "/legacy.pdf", false}, // never checked as a PDF
	} {
		err := l.renameType(c.from, c.to)
		if (err == nil) != c.ok {
			t.Errorf("%s -> %s: %v", c.from, c.to, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "rename refused") {
			t.Errorf("%s -> %s: message %q", c.from, c.to, err)
		}
	}
	if err := (Limits{}).renameType("/a.txt", "/a.exe"); err != nil {
		t.Error(err)
	}
}

func TestValidateFileTypes(t *testing.T) {
	got, err := ValidateFileTypes([]string{"PDF", " txt "})
	if err != nil || strings.Join(got, ",") != "pdf,txt" {
		t.Errorf("%v %v", got, err)
	}
	if _, err := ValidateFileTypes([]string{"exe"}); err == nil || !strings.Contains(err.Error(), "known: pdf, jpeg") {
		t.Errorf("exe: %v", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"50MiB": 50 << 20, "200 MiB": 200 << 20, "1GiB": 1 << 30, "100MB": 100e6, "1234": 1234, "0": 0, "7B": 7} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1MiB", "1.5GiB", "ten", "1 PiB", "99999999999TiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	for n, want := range map[int64]string{1: "1 byte", 999: "999 bytes", 1024: "1 KiB", 50 << 20: "50 MiB", 3<<29 + 0: "1.5 GiB", 1<<20 + 1: "1.0 MiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
