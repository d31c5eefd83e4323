package trail

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sftpgw/sftpgw/audit"
)

const (
	formatVersion = 1
	// sigDomain separates these signatures from anything else the key might
	// ever sign.
	sigDomain = "sftpgw-audit-batch-v1"
	keyTime   = "20060102T150405.000Z"
	seqDigits = 12
)

// zeroHash is the prev link of the first batch of an instance.
var zeroHash = strings.Repeat("0", 2*sha256.Size)

// header is the first line of a batch object.
type header struct {
	Type     string `json:"type"` // "batch"
	Version  int    `json:"v"`
	Instance string `json:"instance"`
	Seq      uint64 `json:"seq"`
	Prev     string `json:"prev"` // hex SHA-256 of the whole previous object
	Time     string `json:"time"` // sealing time, also in the object key
	Count    int    `json:"count"`
	First    string `json:"first"` // earliest event time
	Last     string `json:"last"`  // latest event time
}

// digestLine is the last line of a batch object.
type digestLine struct {
	Type   string `json:"type"`   // "digest"
	SHA256 string `json:"sha256"` // hex SHA-256 of every preceding byte
	KeyID  string `json:"key_id"` // identifies the signing key, see keyID
	Sig    string `json:"sig"`    // base64 ed25519 signature, see signedMessage
}

// signedMessage is what the digest signature covers. The digest already
// covers the header, but binding instance and seq again makes a signature
// useless outside its own slot even to a parser that skips the header.
func signedMessage(instance string, seq uint64, sum []byte) []byte {
	var b bytes.Buffer
	b.WriteString(sigDomain)
	b.WriteByte(0)
	b.WriteString(instance)
	b.WriteByte(0)
	b.WriteString(strconv.FormatUint(seq, 10))
	b.WriteByte(0)
	b.Write(sum)
	return b.Bytes()
}

// keyID names a public key in reports: the first 8 bytes of its SHA-256, hex.
func keyID(pub ed25519.PublicKey) string { return Fingerprint(pub)[:16] }

// encodeBatch builds the complete object: header, event lines (each without
// its newline), signed digest.
func encodeBatch(h header, lines [][]byte, key ed25519.PrivateKey) []byte {
	h.Type, h.Version, h.Count = "batch", formatVersion, len(lines)
	hb, _ := json.Marshal(h) // plain strings and numbers: cannot fail
	size := len(hb) + 256
	for _, l := range lines {
		size += len(l) + 1
	}
	buf := make([]byte, 0, size)
	buf = append(append(buf, hb...), '\n')
	for _, l := range lines {
		buf = append(append(buf, l...), '\n')
	}
	sum := sha256.Sum256(buf)
	d := digestLine{
		Type:   "digest",
		SHA256: hex.EncodeToString(sum[:]),
		KeyID:  keyID(key.Public().(ed25519.PublicKey)),
		Sig:    base64.StdEncoding.EncodeToString(ed25519.Sign(key, signedMessage(h.Instance, h.Seq, sum[:]))),
	}
	db, _ := json.Marshal(d)
	return append(append(buf, db...), '\n')
}

// batch is a parsed object. Parsing checks structure only; integrity and
// signature are judged by check.
type batch struct {
	h         header
	d         digestLine
	events    [][]byte
	digestOff int // offset of the digest line: the digest covers data[:digestOff]
}

var errMalformed = errors.New("malformed batch")

func parseBatch(data []byte) (*batch, error) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%w: does not end with a newline", errMalformed)
	}
	lines := bytes.Split(data[:len(data)-1], []byte{'\n'})
	if len(lines) < 2 {
		return nil, fmt.Errorf("%w: fewer than two lines", errMalformed)
	}
	b := &batch{events: lines[1 : len(lines)-1]}
	if err := json.Unmarshal(lines[0], &b.h); err != nil || b.h.Type != "batch" {
		return nil, fmt.Errorf("%w: first line is not a batch header", errMalformed)
	}
	if b.h.Version != formatVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", errMalformed, b.h.Version)
	}
	last := lines[len(lines)-1]
	if err := json.Unmarshal(last, &b.d); err != nil || b.d.Type != "digest" {
		return nil, fmt.Errorf("%w: last line is not a digest", errMalformed)
	}
	b.digestOff = len(data) - len(last) - 1
	return b, nil
}

// eventTime reads the time of one event line.
func eventTime(line []byte) (time.Time, error) {
	var e struct {
		Time time.Time `json:"time"`
	}
	if !json.Valid(line) || len(line) == 0 || line[0] != '{' {
		return time.Time{}, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return time.Time{}, err
	}
	return e.Time, nil
}

// check verifies one object on its own: digest, signature, header fields
// against content. It returns human-readable findings, each with a kind.
func (b *batch) check(data []byte, pub ed25519.PublicKey) []finding {
	var out []finding
	sum := sha256.Sum256(data[:b.digestOff])
	if hex.EncodeToString(sum[:]) != b.d.SHA256 {
		out = append(out, finding{KindAltered, "content does not match its digest (edited after signing)"})
	}
	claimed, err := hex.DecodeString(b.d.SHA256)
	sig, err2 := base64.StdEncoding.DecodeString(b.d.Sig)
	if err != nil || err2 != nil || len(claimed) != sha256.Size ||
		!ed25519.Verify(pub, signedMessage(b.h.Instance, b.h.Seq, claimed), sig) {
		detail := "signature does not verify with the given public key"
		if b.d.KeyID != keyID(pub) {
			detail += fmt.Sprintf(" (signed by key %q, expected %q)", b.d.KeyID, keyID(pub))
		}
		out = append(out, finding{KindSignature, detail})
	}
	if b.h.Count != len(b.events) {
		out = append(out, finding{KindMalformed, fmt.Sprintf("header count %d, object holds %d events", b.h.Count, len(b.events))})
	}
	if len(b.h.Prev) != len(zeroHash) {
		out = append(out, finding{KindMalformed, "prev is not a hex SHA-256"})
	}
	var first, last time.Time
	for i, l := range b.events {
		t, err := eventTime(l)
		if err != nil {
			out = append(out, finding{KindMalformed, fmt.Sprintf("event line %d: %v", i+2, err)})
			continue
		}
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	if len(b.events) > 0 && (b.h.First != audit.FormatTime(first) || b.h.Last != audit.FormatTime(last)) {
		out = append(out, finding{KindTime, fmt.Sprintf("header first/last %s..%s, events span %s..%s",
			b.h.First, b.h.Last, audit.FormatTime(first), audit.FormatTime(last))})
	}
	return out
}

type finding struct {
	kind   ProblemKind
	detail string
}

// objectKey is <prefix><instance>/YYYY/MM/DD/<YYYYMMDDTHHMMSS.mmmZ>-<seq>.jsonl.
// Sealing times never go backwards within an instance, so key order is
// chain order and the newest batch is the last key.
func objectKey(prefix, instance string, sealed time.Time, seq uint64) string {
	sealed = sealed.UTC()
	return fmt.Sprintf("%s%s/%s%s-%0*d.jsonl", prefix, instance,
		sealed.Format("2006/01/02/"), sealed.Format(keyTime), seqDigits, seq)
}

var keyRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*)/(\d{4})/(\d{2})/(\d{2})/(\d{8}T\d{6}\.\d{3}Z)-(\d{12})\.jsonl$`)

type keyInfo struct {
	instance string
	sealed   time.Time
	seq      uint64
}

func parseKey(prefix, key string) (keyInfo, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return keyInfo{}, false
	}
	m := keyRE.FindStringSubmatch(rest)
	if m == nil {
		return keyInfo{}, false
	}
	t, err := time.Parse(keyTime, m[5])
	if err != nil || t.Format("2006/01/02") != m[2]+"/"+m[3]+"/"+m[4] {
		return keyInfo{}, false
	}
	seq, err := strconv.ParseUint(m[6], 10, 64)
	if err != nil {
		return keyInfo{}, false
	}
	return keyInfo{instance: m[1], sealed: t, seq: seq}, true
}

var instanceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
