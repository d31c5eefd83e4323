package authn

import (
	"errors"
	"image"
	"image/color"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/boombuler/barcode/qr"
)

// RFC 6238 Appendix B, SHA-1 rows (seed "12345678901234567890").
var rfc6238 = []struct {
	unix  int64
	code8 string
}{
	{59, "94287082"},
	{1111111109, "07081804"},
	{1111111111, "14050471"},
	{1234567890, "89005924"},
	{2000000000, "69279037"},
	{20000000000, "65353130"},
}

var rfcSeed = []byte("12345678901234567890")

func TestTOTPRFC6238Vectors(t *testing.T) {
	for _, v := range rfc6238 {
		step := totpStep(time.Unix(v.unix, 0))
		if got := hotp(rfcSeed, uint64(step), 8); got != v.code8 {
			t.Errorf("T=%d: 8 digits %s, want %s", v.unix, got, v.code8)
		}
		want6 := v.code8[2:]
		if got := hotp(rfcSeed, uint64(step), 6); got != want6 {
			t.Errorf("T=%d: 6 digits %s, want %s", v.unix, got, want6)
		}
		if s := matchTOTP(rfcSeed, want6, time.Unix(v.unix, 0)); len(s) != 1 || s[0] != step {
			t.Errorf("T=%d: matchTOTP = %v, want [%d]", v.unix, s, step)
		}
	}
}

func TestTOTPSkew(t *testing.T) {
	now := time.Unix(1111111111, 0)
	step := totpStep(now)
	for _, d := range []int64{-1, 0, 1} {
		code := hotp(rfcSeed, uint64(step+d), 6)
		if err := newTOTPVerifier().verify("bob", rfcSeed, code, now); err != nil {
			t.Errorf("step %+d refused: %v", d, err)
		}
	}
	for _, d := range []int64{-3, -2, 2, 3} {
		code := hotp(rfcSeed, uint64(step+d), 6)
		if len(matchTOTP(rfcSeed, code, now)) != 0 {
			continue // a random collision with a neighbour step; nothing to test
		}
		if err := newTOTPVerifier().verify("bob", rfcSeed, code, now); !errors.Is(err, errBadTOTP) {
			t.Errorf("step %+d: err = %v, want bad code", d, err)
		}
	}
}

func TestTOTPRejectsMalformed(t *testing.T) {
	now := time.Unix(1234567890, 0)
	good := hotp(rfcSeed, uint64(totpStep(now)), 6)
	for _, c := range []string{"", "12345", "1234567", "abcdef", good + "0", "0" + good, "-" + good[1:], " "} {
		if err := newTOTPVerifier().verify("bob", rfcSeed, c, now); !errors.Is(err, errBadTOTP) {
			t.Errorf("%q: err = %v", c, err)
		}
	}
	if err := newTOTPVerifier().verify("bob", rfcSeed, " "+good+" ", now); err != nil {
		t.Errorf("surrounding blanks should be tolerated: %v", err)
	}
}

func TestTOTPReplay(t *testing.T) {
	v := newTOTPVerifier()
	now := time.Unix(1234567890, 0)
	code := hotp(rfcSeed, uint64(totpStep(now)), 6)
	if err := v.verify("bob", rfcSeed, code, now); err != nil {
		t.Fatal(err)
	}
	// Same code again, same time and 30 s later (still inside the window).
	for _, later := range []time.Duration{0, 10 * time.Second, 30 * time.Second} {
		if err := v.verify("bob", rfcSeed, code, now.Add(later)); !errors.Is(err, errReplayedTOTP) {
			t.Errorf("+%s: err = %v, want replay", later, err)
		}
	}
	// The previous step's code is older than the accepted one: also refused.
	prev := hotp(rfcSeed, uint64(totpStep(now)-1), 6)
	if err := v.verify("bob", rfcSeed, prev, now); !errors.Is(err, errReplayedTOTP) {
		t.Errorf("older step: err = %v, want replay", err)
	}
	// Another user with the same seed is independent.
	if err := v.verify("carol", rfcSeed, code, now); err != nil {
		t.Errorf("other user: %v", err)
	}
	// The next step's code works once.
	next := hotp(rfcSeed, uint64(totpStep(now)+1), 6)
	if err := v.verify("bob", rfcSeed, next, now.Add(30*time.Second)); err != nil {
		t.Errorf("next step: %v", err)
	}
	// Entries leave the cache once they cannot match anymore.
	v.verify("x", rfcSeed, "000000", now.Add(10*time.Minute))
	if len(v.last) != 0 {
		t.Errorf("cache not pruned: %d entries", len(v.last))
	}
}

func TestGenerateSecretAndURI(t *testing.T) {
	s, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	c, key, err := ParseTOTPSecret(s)
	if err != nil || c != s || len(key) != 20 {
		t.Fatalf("secret %q: canonical %q, %d bytes, %v", s, c, len(key), err)
	}
	if s2, _ := GenerateSecret(); s2 == s {
		t.Fatal("secrets repeat")
	}
	u, err := url.Parse(URI("ACME SFTP", "u12fx", s))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/ACME SFTP:u12fx" ||
		q.Get("secret") != s || q.Get("issuer") != "ACME SFTP" || q.Get("digits") != "6" ||
		q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Errorf("bad URI %s", u)
	}
}

func TestQR(t *testing.T) {
	out := QR(URI("sftpgw", "u12fx", testSecret))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 12 {
		t.Fatalf("too small:\n%s", out)
	}
	width := len([]rune(lines[0]))
	for i, l := range lines {
		if n := len([]rune(l)); n != width {
			t.Fatalf("line %d has %d columns, want %d", i, n, width)
		}
		if strings.Trim(l, " █▀▄") != "" {
			t.Fatalf("unexpected characters in %q", l)
		}
	}
	// Two modules per line plus the quiet zone on both sides.
	if modules := width - 2*qrQuiet; modules < 21 || (modules-21)%4 != 0 || len(lines) != (width+1)/2 {
		t.Errorf("odd geometry: %d columns, %d lines", width, len(lines))
	}
	if lines[0] != strings.Repeat("█", width) {
		t.Errorf("quiet zone missing: %q", lines[0])
	}
	if QR(strings.Repeat("x", 8000)) != "" {
		t.Error("oversized content should give an empty rendering")
	}
}

// TestQRMatchesMatrix reads the half blocks back into modules and compares
// them with the encoder's matrix, quiet zone included.
func TestQRMatchesMatrix(t *testing.T) {
	text := URI("sftpgw", "u12fx", testSecret)
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(QR(text), "\n"), "\n")
	b := code.Bounds()
	for row, l := range lines {
		for col, r := range []rune(l) {
			x := b.Min.X - qrQuiet + col
			for half, y := range []int{b.Min.Y - qrQuiet + 2*row, b.Min.Y - qrQuiet + 2*row + 1} {
				if y >= b.Max.Y+qrQuiet {
					continue
				}
				light := r == '█' || (half == 0 && r == '▀') || (half == 1 && r == '▄')
				dark := image.Pt(x, y).In(b) && color.GrayModel.Convert(code.At(x, y)).(color.Gray).Y < 128
				if light == dark {
					t.Fatalf("module (%d,%d): rendered light=%v, matrix dark=%v", x, y, light, dark)
				}
			}
		}
	}
}
