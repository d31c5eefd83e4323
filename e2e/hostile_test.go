package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/metrics"
)

// Hostile input from a raw client that writes SFTP packets straight onto
// the session channel: malformed and oversized packets, path tricks,
// invalid UTF-8, bogus handles. Every request gets a clear error (or the
// channel is closed), nothing panics, nothing leaves the home, and the
// gateway keeps serving.

// SFTP v3 numbers the hostile client needs (see draft-ietf-secsh-filexfer-02).
const (
	hInit, hVersion                       = 1, 2
	hOpen, hClose, hRead, hWrite          = 3, 4, 5, 6
	hSetstat                              = 9
	hRemove, hMkdir, hRealpath, hStat     = 13, 14, 16, 17
	hRename, hSymlink                     = 18, 20
	hStatus, hHandle, hData, hName        = 101, 102, 103, 104
	hAttrs, hExtended                     = 105, 200
	hOK, hNoSuchFile, hFailure, hOpUnsupp = 0, 2, 4, 8

	hFlagRead, hFlagWrite, hFlagCreat, hFlagTrunc = 0x01, 0x02, 0x08, 0x10
)

var errChannelClosed = errors.New("channel closed by the gateway")

// hostile is a raw SFTP client on one SSH session channel.
type hostile struct {
	t    *testing.T
	sess *ssh.Session
	w    io.WriteCloser
	r    io.Reader
	id   uint32
}

func newHostile(t *testing.T, sc *ssh.Client, init bool) *hostile {
	t.Helper()
	s, err := sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := s.StdinPipe()
	r, _ := s.StdoutPipe()
	if err := s.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	h := &hostile{t: t, sess: s, w: w, r: r}
	t.Cleanup(func() { s.Close() })
	if init {
		h.raw(hPacket(hInit, u32(3)))
		typ, _, err := h.recv()
		if err != nil || typ != hVersion {
			t.Fatalf("INIT: type %d, %v", typ, err)
		}
	}
	return h
}

func u32(v uint32) []byte  { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte  { return binary.BigEndian.AppendUint64(nil, v) }
func hStr(s string) []byte { return append(u32(uint32(len(s))), s...) }

func hPacket(typ byte, parts ...[]byte) []byte {
	body := []byte{typ}
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(u32(uint32(len(body))), body...)
}

func (h *hostile) raw(b []byte) {
	if _, err := h.w.Write(b); err != nil {
		h.t.Logf("write: %v", err)
	}
}

// recv reads one reply; a closed channel is errChannelClosed, a silent
// gateway fails the test.
func (h *hostile) recv() (byte, []byte, error) {
	typ, body, err := readPacketTimeout(h.t, h.r, 300<<10)
	switch {
	case errors.Is(err, errBadLength):
		return 0, nil, fmt.Errorf("gateway sent a packet of %v", err)
	case err != nil:
		return 0, nil, errChannelClosed
	}
	return typ, body, nil
}

// req sends a request with a fresh id and returns the reply's type and
// body after the id.
func (h *hostile) req(typ byte, parts ...[]byte) (byte, []byte, error) {
	h.id++
	h.raw(hPacket(typ, append([][]byte{u32(h.id)}, parts...)...))
	rt, body, err := h.recv()
	if err != nil {
		return 0, nil, err
	}
	if len(body) < 4 || binary.BigEndian.Uint32(body) != h.id {
		return 0, nil, fmt.Errorf("reply type %d does not answer request %d", rt, h.id)
	}
	return rt, body[4:], nil
}

// status decodes a STATUS reply into code and message.
func hStatusOf(typ byte, body []byte) (uint32, string, bool) {
	if typ != hStatus || len(body) < 8 {
		return 0, "", false
	}
	code := binary.BigEndian.Uint32(body)
	n := binary.BigEndian.Uint32(body[4:])
	if uint32(len(body)-8) < n {
		return code, "", true
	}
	return code, string(body[8 : 8+n]), true
}

// open returns a handle for name or fails the test.
func (h *hostile) open(name string, flags uint32) string {
	h.t.Helper()
	typ, body, err := h.req(hOpen, hStr(name), u32(flags), u32(0))
	if err != nil || typ != hHandle || len(body) < 4 {
		code, msg, _ := hStatusOf(typ, body)
		h.t.Fatalf("open %s: type %d (status %d %q), %v", name, typ, code, msg, err)
	}
	n := binary.BigEndian.Uint32(body)
	return string(body[4 : 4+n])
}

// TestHostileSFTPRequests sends well-framed but hostile requests on one
// channel: each gets a STATUS error with a clear text, and the channel
// keeps working afterwards.
func TestHostileSFTPRequests(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	other := g.AddUser("partner", false)
	seedBig(t, g, cliHome(other)+"secret.txt", 100)
	seedBig(t, g, cliHome(u)+"mine.bin", 300<<10)
	sc, err := cliDial(t, g, u, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	h := newHostile(t, sc, true)
	long := strings.Repeat("a/", 600) + "x"

	cases := []struct {
		name    string
		typ     byte
		parts   [][]byte
		code    uint32 // expected STATUS code
		msgPart string // expected in the message ("" = any)
	}{
		{"unknown extension", hExtended, [][]byte{hStr("evil@example.com"), hStr("x")}, hOpUnsupp, ""},
		{"copy-data extension (read side door)", hExtended, [][]byte{hStr("copy-data"), hStr("h"), u64(0), u64(0), hStr("h2"), u64(0)}, hOpUnsupp, ""},
		{"invalid UTF-8 open", hOpen, [][]byte{hStr("bad-\xff\xfe.txt"), u32(hFlagWrite | hFlagCreat | hFlagTrunc), u32(0)}, hFailure, "not valid UTF-8"},
		{"invalid UTF-8 mkdir", hMkdir, [][]byte{hStr("dir-\xc3\x28"), u32(0)}, hFailure, "not valid UTF-8"},
		{"NUL in name", hOpen, [][]byte{hStr("a\x00b"), u32(hFlagWrite | hFlagCreat | hFlagTrunc), u32(0)}, hFailure, "NUL"},
		{"control character", hMkdir, [][]byte{hStr("a\x1b[31mred"), u32(0)}, hFailure, "control character"},
		{"backslash traversal", hOpen, [][]byte{hStr(`..\..\` + other.Name + `\secret.txt`), u32(hFlagRead), u32(0)}, hFailure, "backslash"},
		{"very long path", hOpen, [][]byte{hStr(long), u32(hFlagWrite | hFlagCreat | hFlagTrunc), u32(0)}, hFailure, "too long"},
		{"long component", hMkdir, [][]byte{hStr(strings.Repeat("x", 300)), u32(0)}, hFailure, "longer than 255"},
		{"read another partner's file", hOpen, [][]byte{hStr("../" + other.Name + "/secret.txt"), u32(hFlagRead), u32(0)}, hNoSuchFile, ""},
		{"stat above the root", hStat, [][]byte{hStr("/../../../../etc/passwd")}, hNoSuchFile, ""},
		{"bogus handle read", hRead, [][]byte{hStr("no-such-handle"), u64(0), u32(1024)}, hFailure, ""},
		{"bogus handle write", hWrite, [][]byte{hStr("no-such-handle"), u64(0), hStr("data")}, hFailure, ""},
		{"bogus handle close", hClose, [][]byte{hStr("no-such-handle")}, hFailure, ""},
		{"symlink", hSymlink, [][]byte{hStr("link"), hStr("/mine.bin")}, hOpUnsupp, ""},
		{"remove the root", hRemove, [][]byte{hStr("/")}, hFailure, ""},
		{"rename out of the home", hRename, [][]byte{hStr("mine.bin"), hStr("../../../" + other.Name + "/stolen.bin")}, hOK, ""},
	}
	for _, tc := range cases {
		typ, body, err := h.req(tc.typ, tc.parts...)
		if err != nil {
			t.Fatalf("%s: %v (the channel must survive a well-framed request)", tc.name, err)
		}
		code, msg, ok := hStatusOf(typ, body)
		if !ok {
			t.Errorf("%s: reply type %d, want STATUS", tc.name, typ)
			continue
		}
		// A status code other than the expected one is fine only if it is
		// still a refusal; OK must be exactly expected.
		if code != tc.code && (code == hOK || tc.code == hOK) {
			t.Errorf("%s: status %d %q, want %d", tc.name, code, msg, tc.code)
		}
		if tc.msgPart != "" && !strings.Contains(msg, tc.msgPart) {
			t.Errorf("%s: message %q lacks %q", tc.name, msg, tc.msgPart)
		}
		noRawS3(t, tc.name, msg)
		t.Logf("%-36s → status %d %q", tc.name, code, msg)
	}

	// REALPATH never climbs above the home's root.
	typ, body, err := h.req(hRealpath, hStr("../../.."))
	if err != nil || typ != hName || !strings.Contains(string(body), "\x00\x00\x00\x01/") {
		t.Errorf("realpath ../../..: type %d %q %v", typ, body, err)
	}
	// A read asking for 4 GiB gets at most one packet's worth.
	// The rename's "../../../other/" stayed in the home: home/other/.
	moved := "/" + other.Name + "/stolen.bin"
	hd := h.open(moved, hFlagRead)
	typ, body, err = h.req(hRead, hStr(hd), u64(0), u32(0xffffffff))
	if err != nil || typ != hData || len(body) < 4 {
		t.Fatalf("huge read: type %d, %v", typ, err)
	}
	if n := binary.BigEndian.Uint32(body); n == 0 || n > 256<<10 {
		t.Errorf("huge read returned %d bytes", n)
	}
	h.req(hClose, hStr(hd))
	// A write far beyond the end fails the upload; nothing is stored.
	hw := h.open("sparse.bin", hFlagWrite|hFlagCreat|hFlagTrunc)
	typ, body, err = h.req(hWrite, hStr(hw), u64(1<<62), hStr("x"))
	if err != nil {
		t.Fatal(err)
	}
	closeTyp, closeBody, _ := h.req(hClose, hStr(hw))
	wcode, _, _ := hStatusOf(typ, body)
	ccode, cmsg, _ := hStatusOf(closeTyp, closeBody)
	if wcode == hOK && ccode == hOK {
		t.Error("a write at 2^62 was accepted and committed")
	}
	t.Logf("write at 2^62: write status %d, close status %d %q", wcode, ccode, cmsg)

	// The channel still works.
	if typ, _, err := h.req(hStat, hStr(moved)); err != nil || typ != hAttrs {
		t.Errorf("stat after the hostile requests: type %d, %v", typ, err)
	}
	hostileInHome(t, g, u, other)
	if n := len(g.Events.Find(audit.Event{User: u.Name, ErrClass: "invalid_path"})); n < 7 {
		t.Errorf("%d invalid_path audit events, want >= 7", n)
	}
}

// hostileInHome checks u only ever wrote inside its home and other's file
// is untouched.
func hostileInHome(t *testing.T, g *testgw.Gateway, u, other *testgw.User) {
	t.Helper()
	cl, b := s3Client(t, g, "files")
	for _, k := range allKeys(t, cl, b) {
		if !strings.HasPrefix(k, cliHome(u)) && k != cliHome(other)+"secret.txt" {
			t.Errorf("key %q outside %s's home", k, u.Name)
		}
	}
	if !exists(t, cl, b, cliHome(u)+other.Name+"/stolen.bin") {
		t.Error("rename with ../ did not land in the home")
	}
}

// TestHostileSFTPFraming breaks the packet framing itself: zero length,
// oversized length (up to 4 GiB, which must not be allocated), truncated
// bodies, garbage before INIT. The gateway may close the channel (it
// cannot resync a byte stream) but must not crash, hang or balloon, and
// other sessions keep working.
func TestHostileSFTPFraming(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	sc, err := cliDial(t, g, u, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse

	cases := []struct {
		name string
		init bool
		data []byte
	}{
		{"zero length", true, u32(0)},
		{"length 4 GiB - 1", true, append(u32(0xffffffff), hOpen)},
		{"length 2 GiB, extended", true, append(u32(0x80000000), hExtended)},
		{"length 300 KiB", true, append(u32(300<<10), append([]byte{hWrite}, make([]byte, 1000)...)...)},
		{"string longer than packet", true, hPacket(hOpen, u32(1), u32(0x7fffffff), []byte("short"))},
		{"truncated open", true, hPacket(hOpen, u32(1), hStr("x"))},
		{"truncated attrs", true, hPacket(hSetstat, u32(1), hStr("x"), u32(0xffffffff))},
		{"open before init", false, hPacket(hOpen, u32(1), hStr("x"), u32(hFlagWrite), u32(0))},
		{"garbage", false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"init version 2^32-1", false, hPacket(hInit, u32(0xffffffff))},
		// pkg/sftp closes the channel on a packet type it does not know,
		// where the draft suggests SSH_FX_OP_UNSUPPORTED; harmless here.
		{"unknown packet type", true, hPacket(99, u32(1))},
	}
	for _, tc := range cases {
		h := newHostile(t, sc, tc.init)
		h.raw(tc.data)
		// Follow with a valid request: it is answered or the channel is gone.
		h.id = 1000
		typ, body, err := h.req(hRealpath, hStr("."))
		switch {
		case errors.Is(err, errChannelClosed):
			t.Logf("%-28s → channel closed", tc.name)
		case err != nil:
			// A reply to the hostile packet itself came first: read on.
			code, msg, _ := hStatusOf(typ, body)
			t.Logf("%-28s → %v (status %d %q)", tc.name, err, code, msg)
		default:
			t.Logf("%-28s → still answering (type %d)", tc.name, typ)
		}
		h.sess.Close()
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapInuse) - int64(heapBefore); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB after hostile framing", grew>>20)
	}
	// The same connection and new ones still work.
	h := newHostile(t, sc, true)
	if typ, _, err := h.req(hRealpath, hStr(".")); err != nil || typ != hName {
		t.Errorf("new channel on the same connection: type %d, %v", typ, err)
	}
	if out, err := g.SFTP(u, "ls"); err != nil {
		t.Errorf("new login after hostile framing: %v\n%s", err, out)
	}
}

// TestHostileHandles opens many upload handles and drops the connection
// without closing them: opens beyond the session's handle limit (16, what
// limits@openssh.com announces) are refused with a reason and audited,
// every open upload is aborted, nothing is stored.
func TestHostileHandles(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	sc, err := cliDial(t, g, u, "")
	if err != nil {
		t.Fatal(err)
	}
	h := newHostile(t, sc, true)
	const n, limit = 500, gateway.DefaultMaxHandles
	for i := range n {
		name := fmt.Sprintf("open-%03d", i)
		if i >= limit {
			typ, body, err := h.req(hOpen, hStr(name), u32(hFlagWrite|hFlagCreat|hFlagTrunc), u32(0))
			code, msg, _ := hStatusOf(typ, body)
			if err != nil || code != hFailure || !strings.Contains(msg, "too many open files") {
				t.Fatalf("open %d over the limit: type %d status %d %q, %v", i, typ, code, msg, err)
			}
			continue
		}
		hd := h.open(name, hFlagWrite|hFlagCreat|hFlagTrunc)
		if i%2 == 0 { // half of them with data, some of it out of order
			h.req(hWrite, hStr(hd), u64(4096), hStr(strings.Repeat("b", 4096)))
		}
	}
	if got := g.Server.Uploads().Active(); got != limit {
		t.Errorf("%d uploads registered, want %d", got, limit)
	}
	if got := len(g.Events.Find(audit.Event{Op: "upload", Result: "denied", ErrClass: "limit"})); got != n-limit {
		t.Errorf("%d refused opens audited, want %d", got, n-limit)
	}
	sc.Close()
	waitFor(t, 30*time.Second, "all uploads aborted", func() bool { return g.Server.Uploads().Active() == 0 })
	if keys := allKeys(t, c, bucket); len(keys) != 0 {
		t.Errorf("abandoned handles left objects: %v", keys[:min(5, len(keys))])
	}
	if got := len(g.Events.Find(audit.Event{Op: "upload", Result: "error"})); got != limit {
		t.Errorf("%d aborted-upload events, want %d", got, limit)
	}
}

// TestHostileLogin tries user names a raw client could send: invalid
// UTF-8, traversal, NUL, very long. All are refused without a session.
func TestHostileLogin(t *testing.T) {
	// High lockout thresholds: this is about parsing names, not banning.
	g := testgw.Start(t, testgw.Options{Lockout: authn.Lockout{MaxIPFailures: 100, MaxPairFailures: 100}})
	u := g.AddUser("partner", false)
	pk := cliHostKey(t, g)
	for _, name := range []string{"\xff\xfe", "../" + u.Name, u.Name + "\x00", strings.Repeat("u", 10000), u.Name + "/../x", ""} {
		_, err := ssh.Dial("tcp", g.Addr, &ssh.ClientConfig{User: name, Auth: []ssh.AuthMethod{ssh.PublicKeys(u.Signer)},
			HostKeyCallback: ssh.FixedHostKey(pk), Timeout: 10 * time.Second})
		if err == nil {
			t.Errorf("login as %q succeeded", name)
		}
	}
	if n := len(g.Events.Find(audit.Event{Kind: "session_start"})); n != 0 {
		t.Errorf("%d sessions started", n)
	}
	if out, err := g.SFTP(u, "ls"); err != nil {
		t.Errorf("the real user after hostile logins: %v\n%s", err, out)
	}
}

// TestHostileNoInit streams limits@openssh.com requests without ever
// sending INIT, as the outside review did (300,000 requests, 9 MB): the
// gateway queued every reply until a VERSION that never came. The first
// packet must be INIT; anything else ends the channel at once, is audited,
// and the gateway's heap does not grow with what the client sends.
func TestHostileNoInit(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("applicant", false)
	sc, err := cliDial(t, g, u, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse

	h := newHostile(t, sc, false)
	const n, perChunk = 300_000, 2000
	var chunk []byte
	for i := range perChunk {
		chunk = append(chunk, hPacket(hExtended, u32(uint32(i)), hStr("limits@openssh.com"))...)
	}
	sent := 0
	for sent < n {
		if _, err := h.w.Write(chunk); err != nil {
			break
		}
		sent += perChunk
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grew := int64(ms.HeapInuse) - int64(heapBefore)
	t.Logf("%d of %d requests (%d bytes each) written before the channel closed; heap grew by %d KiB",
		sent, n, len(chunk)/perChunk, grew>>10)
	if sent >= n {
		t.Errorf("the gateway took all %d requests sent before INIT (%d MiB of heap)", n, grew>>20)
	}
	// Margin: the whole test process is measured (client included); 9 MB
	// of queued replies were 23 MB of heap.
	if grew > 4<<20 {
		t.Errorf("heap grew by %d MiB while a client sent requests before INIT", grew>>20)
	}
	if typ, _, err := h.recv(); !errors.Is(err, errChannelClosed) {
		t.Errorf("a request before INIT was answered (type %d), want the channel closed", typ)
	}
	waitFor(t, 10*time.Second, "request_before_init audited", func() bool {
		return len(g.Events.Find(audit.Event{User: u.Name, Op: "request_before_init", Result: "denied"})) == 1
	})
	// The connection and the gateway keep serving.
	h2 := newHostile(t, sc, true)
	if typ, _, err := h2.req(hRealpath, hStr(".")); err != nil || typ != hName {
		t.Errorf("new channel after the hostile one: type %d, %v", typ, err)
	}
}

// TestHostileExtensionNamesMetrics sends 20,000 extended requests with
// invented names through a real gateway: each is refused and audited, but
// sftpgw_operations_total keeps a fixed set of series (it had one per name:
// 20,000 series, 2 MiB of /metrics).
func TestHostileExtensionNamesMetrics(t *testing.T) {
	m := metrics.New(metrics.Options{NoRuntime: true})
	g := testgw.Start(t, testgw.Options{Audit: m})
	u := g.AddUser("applicant", false)
	sc, err := cliDial(t, g, u, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	h := newHostile(t, sc, true)
	const n = 20000
	go func() { // replies are read below, concurrently: requests in flight are bounded
		var buf []byte
		for i := range n {
			buf = append(buf, hPacket(hExtended, u32(uint32(i+1)), hStr(fmt.Sprintf("x-%d.evil.example", i)))...)
			if len(buf) > 32<<10 || i == n-1 {
				if _, err := h.w.Write(buf); err != nil {
					return
				}
				buf = buf[:0]
			}
		}
	}()
	for i := range n {
		typ, body, err := h.recv()
		if code, _, ok := hStatusOf(typ, body[min(4, len(body)):]); err != nil || !ok || code != hOpUnsupp {
			t.Fatalf("reply %d: type %d, status %d, %v", i, typ, code, err)
		}
	}
	waitFor(t, 10*time.Second, "every refusal audited", func() bool {
		return len(g.Events.Find(audit.Event{User: u.Name, Result: "denied", ErrClass: "unsupported"})) >= n
	})
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	series := 0
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "sftpgw_operations_total{") {
			series++
		}
	}
	t.Logf("%d sftpgw_operations_total series, /metrics %d bytes", series, rec.Body.Len())
	if series > 5 {
		t.Errorf("%d operation series after %d invented extension names", series, n)
	}
	if v := metricValue(rec.Body.String(), `sftpgw_operations_total{op="other",result="denied",role="applicant"}`); v != n {
		t.Errorf("invented extensions counted as other: %v, want %d", v, n)
	}
}

// TestHostileManyChannels: x/crypto/ssh lets a client open any number of
// session channels on one connection, each an SFTP server with its own
// window, workers and requests in flight. At most 10 are open at once (as
// OpenSSH's MaxSessions); the 11th is refused and audited, and a slot frees
// when a channel closes.
func TestHostileManyChannels(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	sc, err := cliDial(t, g, u, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var hs []*hostile
	for range 10 {
		hs = append(hs, newHostile(t, sc, true))
	}
	if s, err := sc.NewSession(); err == nil {
		s.Close()
		t.Fatal("an 11th session channel was opened on one connection")
	}
	waitFor(t, 10*time.Second, "the refusal audited", func() bool {
		return len(g.Events.Find(audit.Event{User: u.Name, Op: "ssh_request", Result: "denied", ErrClass: "limit"})) == 1
	})
	for _, h := range hs[1:] { // the others still work
		if typ, _, err := h.req(hRealpath, hStr(".")); err != nil || typ != hName {
			t.Fatalf("open channel after the refusal: type %d, %v", typ, err)
		}
	}
	hs[0].sess.Close()
	waitFor(t, 10*time.Second, "a channel slot to free up", func() bool {
		s, err := sc.NewSession()
		if err != nil {
			return false
		}
		s.Close()
		return true
	})
}
