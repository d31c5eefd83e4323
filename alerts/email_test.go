package alerts

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	netmail "net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/smtptest"
)

const smtpPassword = "pa55-W0RD-never-logged"

func emailTo(srv *smtptest.Server, tlsMode string) Email {
	return Email{Name: "hr", Host: srv.Host, Port: srv.Port, TLS: tlsMode, RootCAs: srv.RootCAs,
		Username: "gateway", Password: []byte(smtpPassword), From: "sftpgw@example.org", To: []string{"hr@example.org"},
		Events: []string{"*"}, Backoff: 20 * time.Millisecond, Timeout: 10 * time.Second}
}

// An upload alert crosses a real SMTP server with STARTTLS and AUTH.
func TestEmailAlertSTARTTLSAndAuth(t *testing.T) {
	srv := smtptest.Start(t, smtptest.StartTLS, "gateway", smtpPassword)
	s, err := New(Options{Source: "gw-test", Emails: []Email{emailTo(srv, TLSStartTLS)}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	// Latency: from the audit event to the message accepted by the server.
	var worst time.Duration
	for i := range 5 {
		start := time.Now()
		s.Record(upload)
		m := srv.Wait(t, i+1, 20*time.Second)
		took := time.Since(start)
		worst = max(worst, took)
		got := m[i]
		if !got.TLS || !got.Auth || got.To[0] != "hr@example.org" {
			t.Fatalf("message %+v: want TLS and AUTH", got)
		}
		for _, want := range []string{"Subject: [sftpgw] upload_complete anna /cv.pdf", "User:    anna", "Path:    /cv.pdf", "Gateway: gw-test"} {
			if !strings.Contains(got.Data, want) {
				t.Errorf("message lacks %q:\n%s", want, got.Data)
			}
		}
	}
	t.Logf("upload alert delivery latency (event to SMTP server accepted, STARTTLS+AUTH, new connection each): worst of 5 = %s", worst)
	// The server has the message before the sender has finished the
	// session (QUIT) and counted it: wait for the count, then check it.
	waitUntil(t, "5 deliveries counted", func() bool { return s.Stats("hr").Delivered == 5 })
	if st := s.Stats("hr"); st.Delivered != 5 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestEmailImplicitTLS(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Implicit, "gateway", smtpPassword)
	s, err := New(Options{Emails: []Email{emailTo(srv, TLSImplicit)}, Log: hclog.New(&hclog.LoggerOptions{Output: tlog{t}})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	s.Record(mfaLock) // security alerts go out at once, not in the digest
	m := srv.Wait(t, 1, 20*time.Second)
	if !m[0].TLS || !m[0].Auth || !strings.Contains(m[0].Data, "Subject: [sftpgw] mfa_lock") {
		t.Errorf("message %+v", m[0])
	}
}

// Plaintext SMTP is refused unless explicitly allowed: at configuration
// time for tls = "none", and at delivery for a server without STARTTLS.
func TestEmailPlaintextRefusedUnlessAllowed(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Plain, "", "")
	plain := emailTo(srv, TLSNone)
	plain.Username, plain.Password = "", nil
	if _, err := New(Options{Emails: []Email{plain}}); err == nil || !strings.Contains(err.Error(), "allow_plaintext") {
		t.Fatalf("tls none without allow_plaintext: %v", err)
	}
	// The default (STARTTLS) against a server that does not offer it: the
	// message is not sent in clear, and not retried (a setting, not a fault).
	logs := &syncWriter{w: &bytes.Buffer{}}
	st := emailTo(srv, "")
	s, err := New(Options{Emails: []Email{st}, Log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace})})
	if err != nil {
		t.Fatal(err)
	}
	s.Record(upload)
	waitUntil(t, "the refusal", func() bool { return s.Stats("hr").Failed == 1 })
	s.Close(context.Background())
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages sent in clear", n)
	}
	if out := logs.String(); !strings.Contains(out, "STARTTLS") || strings.Contains(out, "retrying") {
		t.Errorf("log:\n%s", out)
	}
	plain.AllowPlaintext = true
	s, err = New(Options{Emails: []Email{plain}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	s.Record(upload)
	if m := srv.Wait(t, 1, 20*time.Second); m[0].TLS {
		t.Errorf("plaintext server reported TLS")
	}
}

// A wrong password fails without retrying (which would only lock the
// account) and the password never reaches the log, not even at trace.
func TestEmailPasswordNeverLogged(t *testing.T) {
	srv := smtptest.Start(t, smtptest.StartTLS, "gateway", "the-right-one")
	logs := &syncWriter{w: &bytes.Buffer{}}
	s, err := New(Options{Emails: []Email{emailTo(srv, TLSStartTLS)}, Log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace})})
	if err != nil {
		t.Fatal(err)
	}
	s.Record(upload)
	waitUntil(t, "the failure", func() bool { return s.Stats("hr").Failed == 1 })
	s.Close(context.Background())
	out := logs.String()
	if strings.Contains(out, smtpPassword) || strings.Contains(out, "pa55") {
		t.Errorf("log holds the password:\n%s", out)
	}
	if !strings.Contains(out, "alert delivery failed") || !strings.Contains(out, "AUTH") || strings.Contains(out, "retrying") {
		t.Errorf("log:\n%s", out)
	}
}

// A server that accepts and never answers, or refuses connections, costs
// Record nothing: the queue drops the oldest, and the attempt times out.
func TestEmailHangingOrRefusingServerNeverBlocks(t *testing.T) {
	hang := smtptest.Start(t, smtptest.Hang, "", "")
	refused := emailTo(hang, TLSStartTLS)
	refused.Name, refused.Port = "refused", 1
	stuck := emailTo(hang, TLSStartTLS)
	stuck.Queue, stuck.Timeout = 4, time.Hour
	s, err := New(Options{Emails: []Email{stuck, refused}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		s.Close(ctx)
	}()
	start := time.Now()
	for range 1000 {
		s.Record(upload)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("1000 Record calls took %s with a hanging SMTP server", took)
	}
	waitUntil(t, "drops", func() bool { return s.Stats("hr").Dropped >= 995 })
}

// fakeClock fires timers only when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), c: ch})
	return ch, func() bool { return true }
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// advance moves to t and fires the timers due by then.
func (c *fakeClock) advance(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	keep := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.at.After(t) {
			tm.c <- t
		} else {
			keep = append(keep, tm)
		}
	}
	c.timers = keep
}

// The daily digest, at a fake 08:00, lists per applicant what arrived,
// what waits with its retention deadline, and what retention deleted
// unread; a file HR collected is not "waiting".
func TestDigestDailyListsFilesAndExpiry(t *testing.T) {
	srv := smtptest.Start(t, smtptest.StartTLS, "gateway", smtpPassword)
	berlin := time.FixedZone("CET", 3600) // a fixed zone: no dependence on the machine's
	t0 := time.Date(2026, 3, 9, 14, 0, 0, 0, berlin)
	clock := &fakeClock{now: t0}
	m := emailTo(srv, TLSStartTLS)
	m.Events = nil // digest only
	m.Digest = &DigestSchedule{DailyAt: "08:00", Location: berlin, Roles: []string{"applicant"},
		// HR sees applicants' homes under /<name>/; objects are applicant/<name>/<file>.
		Locate: func(user, role, p string) (string, bool) {
			if role == "hr" {
				return "files:applicant" + p, true
			}
			return "files:applicant/" + user + p, true
		},
		Retention: func(role string) time.Duration { return 24 * time.Hour }}
	s, err := New(Options{Emails: []Email{m}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	at := func(h, min int) time.Time { return time.Date(2026, 3, 9, h, min, 0, 0, berlin) }
	ev := func(e audit.Event) { s.Record(e) }
	ev(audit.Event{Time: at(14, 5), Kind: "file", Op: "upload", User: "swift-otter-12", Role: "applicant", Path: "/cv.pdf", Bytes: 183_211, Result: "ok"})
	ev(audit.Event{Time: at(14, 6), Kind: "file", Op: "upload", User: "swift-otter-12", Role: "applicant", Path: "/passport.jpg", Bytes: 2 << 20, Result: "ok"})
	ev(audit.Event{Time: at(15, 30), Kind: "file", Op: "upload", User: "calm-heron-7", Role: "applicant", Path: "/diploma.pdf", Bytes: 90_000, Result: "ok"})
	ev(audit.Event{Time: at(16, 0), Kind: "file", Op: "upload", User: "calm-heron-7", Role: "applicant", Path: "/old.pdf", Bytes: 10, Result: "ok"})
	// The applicant reading back is not a collection; HR's download is.
	ev(audit.Event{Time: at(16, 1), Kind: "file", Op: "download", User: "swift-otter-12", Role: "applicant", Path: "/passport.jpg", Result: "ok"})
	ev(audit.Event{Time: at(17, 0), Kind: "file", Op: "download", User: "hr-1", Role: "hr", Path: "/swift-otter-12/cv.pdf", Result: "ok"})
	// A partner's upload is no applicant's.
	ev(audit.Event{Time: at(17, 1), Kind: "file", Op: "upload", User: "acme", Role: "partner", Path: "/r.csv", Bytes: 5, Result: "ok"})
	// Retention deletes one unread file (its storage leads the detail).
	ev(audit.Event{Time: at(17, 2), Kind: "retention", Op: "retention_delete", Path: "applicant/calm-heron-7/old.pdf", Result: "ok",
		Detail: "storage files: older than retention (24h0m0s, modified ...)"})

	waitUntil(t, "the digest timer", func() bool { return clock.pending() == 1 })
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages before 08:00", n)
	}
	clock.advance(time.Date(2026, 3, 10, 8, 0, 0, 0, berlin))
	msg := srv.Wait(t, 1, 20*time.Second)[0]
	subject, body, html := parts(t, msg.Data)
	t.Logf("digest as received:\n%s\ntext part:\n%s", msg.Data, body)
	if subject != "[sftpgw] daily digest: 3 received, 2 waiting, 1 deleted unread" {
		t.Errorf("subject %q", subject)
	}
	for _, want := range []string{
		"Daily digest of sftpgw at 2026-03-10 08:00 CET (first since start)",
		"Applicant calm-heron-7\n  Received (1):\n    - /diploma.pdf, 87.9 KiB (90000 bytes), at 2026-03-09 15:30 CET\n" +
			"  Not collected yet (1):\n    - /diploma.pdf, 87.9 KiB (90000 bytes), received 2026-03-09 15:30 CET, deleted by retention from 2026-03-10 15:30 CET\n" +
			"  Deleted by retention unread (1):\n    - /old.pdf, 10 B, received 2026-03-09 16:00 CET, deleted 2026-03-09 17:02 CET\n",
		"Applicant swift-otter-12\n  Received (2):\n    - /cv.pdf, 178.9 KiB (183211 bytes), at 2026-03-09 14:05 CET\n" +
			"    - /passport.jpg, 2.0 MiB (2097152 bytes), at 2026-03-09 14:06 CET\n" +
			"  Not collected yet (1):\n    - /passport.jpg, 2.0 MiB (2097152 bytes), received 2026-03-09 14:06 CET, deleted by retention from 2026-03-10 14:06 CET\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("digest lacks %q", want)
		}
	}
	if strings.Contains(msg.Data, "acme") || !strings.Contains(html, "<li>/passport.jpg, 2.0 MiB (2097152 bytes), received 2026-03-09 14:06 CET, deleted by retention from 2026-03-10 14:06 CET</li>") ||
		strings.Contains(html, "href") {
		t.Errorf("digest holds a partner, lacks the HTML list, or links somewhere:\n%s", html)
	}

	// The next day: nothing new, the passport still waits; received is empty.
	waitUntil(t, "the next timer", func() bool { return clock.pending() == 1 })
	clock.advance(time.Date(2026, 3, 11, 8, 0, 0, 0, berlin))
	_, body, _ = parts(t, srv.Wait(t, 2, 20*time.Second)[1].Data)
	if !strings.Contains(body, "(since 2026-03-10 08:00 CET)") || strings.Contains(body, "Received") ||
		!strings.Contains(body, "/passport.jpg") || strings.Contains(body, "cv.pdf") || strings.Contains(body, "old.pdf") {
		t.Errorf("second digest:\n%s", body)
	}
}

// Hourly: an empty hour sends nothing; an hour with an upload does.
func TestDigestHourlySkipsEmptyHours(t *testing.T) {
	srv := smtptest.Start(t, smtptest.StartTLS, "gateway", smtpPassword)
	t0 := time.Date(2026, 3, 9, 9, 10, 0, 0, time.UTC)
	clock := &fakeClock{now: t0}
	m := emailTo(srv, TLSStartTLS)
	m.Events = nil
	m.Digest = &DigestSchedule{DailyAt: "08:30", Hourly: true}
	s, err := New(Options{Emails: []Email{m}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	step := func(to time.Time) {
		waitUntil(t, "the digest timer", func() bool { return clock.pending() == 1 })
		clock.advance(to)
	}
	step(time.Date(2026, 3, 9, 9, 30, 0, 0, time.UTC)) // empty hour: nothing
	s.Record(audit.Event{Time: time.Date(2026, 3, 9, 9, 40, 0, 0, time.UTC), Kind: "file", Op: "upload", User: "u1", Path: "/a.pdf", Bytes: 1, Result: "ok"})
	step(time.Date(2026, 3, 9, 10, 30, 0, 0, time.UTC))
	msg := srv.Wait(t, 1, 20*time.Second)[0]
	if !strings.Contains(msg.Data, "Hourly digest") || !strings.Contains(msg.Data, "/a.pdf") {
		t.Errorf("hourly digest:\n%s", msg.Data)
	}
	waitUntil(t, "the digest timer", func() bool { return clock.pending() == 1 })
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages, want 1 (the empty hour sends none)", n)
	}
}

func TestDigestNextTime(t *testing.T) {
	d, err := newDigest(DigestSchedule{DailyAt: "08:30", Hourly: true}, nil, "", realClock{}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		now, want string
		daily     bool
	}{
		{"2026-03-09T07:10:00Z", "2026-03-09T07:30:00Z", false},
		{"2026-03-09T07:30:00Z", "2026-03-09T08:30:00Z", true},
		{"2026-03-09T23:45:00Z", "2026-03-10T00:30:00Z", false},
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		got, daily := d.next(now)
		if got.UTC().Format(time.RFC3339) != c.want || daily != c.daily {
			t.Errorf("next(%s) = %s %v, want %s %v", c.now, got.UTC().Format(time.RFC3339), daily, c.want, c.daily)
		}
	}
	if _, err := newDigest(DigestSchedule{DailyAt: "8:30"}, nil, "", realClock{}, nil); err == nil {
		t.Error("8:30 accepted")
	}
}

// parts decodes a received message: subject, text and HTML parts.
func parts(t *testing.T, data string) (subject, text, html string) {
	t.Helper()
	m, err := netmail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	subject = m.Header.Get("Subject")
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		b, _ := io.ReadAll(m.Body)
		return subject, string(b), ""
	}
	r := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := r.NextPart() // undoes quoted-printable
		if err != nil {
			break
		}
		b, _ := io.ReadAll(p)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") {
			html = string(b)
		} else {
			text = string(b)
		}
	}
	return subject, strings.ReplaceAll(text, "\r\n", "\n"), html
}

// tlog sends a logger's lines to the test log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }
