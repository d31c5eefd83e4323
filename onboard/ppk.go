package onboard

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
)

// PPK renders an unencrypted ed25519 key as a PuTTY private key file,
// format version 3, which PuTTY (0.75+), WinSCP and FileZilla read.
//
// The format: a header, the public blob and the private blob in base64
// (64 characters a line), and an HMAC-SHA-256 over every field. For an
// unencrypted v3 file the MAC key is empty (no key derivation).
func PPK(priv ed25519.PrivateKey, comment string) []byte {
	const alg = "ssh-ed25519"
	comment = oneLine(comment)
	pub := priv.Public().(ed25519.PublicKey)
	pubBlob := append(sshString([]byte(alg)), sshString(pub)...)
	// PuTTY keeps the 32-byte seed (its "private exponent", little-endian)
	// as one string, at full length.
	privBlob := sshString(priv.Seed())

	mac := hmac.New(sha256.New, nil)
	for _, f := range [][]byte{[]byte(alg), []byte("none"), []byte(comment), pubBlob, privBlob} {
		mac.Write(sshString(f))
	}

	var b strings.Builder
	b.WriteString("PuTTY-User-Key-File-3: " + alg + "\n")
	b.WriteString("Encryption: none\n")
	b.WriteString("Comment: " + comment + "\n")
	writeLines(&b, "Public-Lines", pubBlob)
	writeLines(&b, "Private-Lines", privBlob)
	b.WriteString("Private-MAC: " + hex.EncodeToString(mac.Sum(nil)) + "\n")
	return []byte(b.String())
}

func writeLines(b *strings.Builder, header string, blob []byte) {
	s := base64.StdEncoding.EncodeToString(blob)
	var lines []string
	for len(s) > 64 {
		lines = append(lines, s[:64])
		s = s[64:]
	}
	lines = append(lines, s)
	b.WriteString(header + ": " + strconv.Itoa(len(lines)) + "\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
}

// sshString is the SSH wire encoding of a string: uint32 length, bytes.
func sshString(p []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	return append(out, p...)
}

// oneLine keeps a comment on one line (PPK and key comments are line based).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
