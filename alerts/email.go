package alerts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	mail "github.com/wneessen/go-mail"

	"github.com/sftpgw/sftpgw/audit"
)

// TLS modes of an email sink.
const (
	TLSStartTLS = "starttls" // plain connect, then STARTTLS (refused if the server does not offer it)
	TLSImplicit = "implicit" // TLS from the first byte (port 465)
	TLSNone     = "none"     // plaintext: only with AllowPlaintext
)

// Email is one SMTP sink: the same alerts as a webhook, as messages, plus
// an optional digest for HR.
type Email struct {
	Name string
	Host string
	Port int    // default 587 (starttls), 465 (implicit), 25 (none)
	TLS  string // TLSStartTLS (default), TLSImplicit or TLSNone
	// AllowPlaintext must be set for TLS == TLSNone: credentials and
	// applicant names would cross the network in clear.
	AllowPlaintext bool
	// RootCAs verifies the server (nil: the system roots).
	RootCAs  *x509.CertPool
	Username string
	Password []byte // never logged
	From     string
	To       []string
	// SubjectPrefix starts every subject (default "[sftpgw]").
	SubjectPrefix string
	Events        []string // alert names or "*"; may be empty for a digest-only sink
	Digest        *DigestSchedule

	// Queueing, as for webhooks.
	Timeout             time.Duration
	Queue, Attempts     int
	Backoff, MaxBackoff time.Duration
}

// message is one rendered email.
type message struct {
	subject, text, html string
}

func (m Email) addr() string {
	return net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
}

func newMailHook(m Email, source string, clock Clock, log hclog.Logger) (*hook, *digest, error) {
	if m.TLS == "" {
		m.TLS = TLSStartTLS
	}
	switch m.TLS {
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !m.AllowPlaintext {
			return nil, nil, fmt.Errorf("alerts: email %q: tls = \"none\" sends credentials and applicant names in clear; set allow_plaintext = true to accept that", m.Name)
		}
	default:
		return nil, nil, fmt.Errorf("alerts: email %q: tls must be starttls, implicit or none", m.Name)
	}
	if m.Port == 0 {
		m.Port = map[string]int{TLSStartTLS: 587, TLSImplicit: 465, TLSNone: 25}[m.TLS]
	}
	if m.Host == "" || m.From == "" || len(m.To) == 0 {
		return nil, nil, fmt.Errorf("alerts: email %q: host, from and to are required", m.Name)
	}
	if (m.Username == "") != (len(m.Password) == 0) {
		return nil, nil, fmt.Errorf("alerts: email %q: set both username and password, or neither", m.Name)
	}
	if m.SubjectPrefix == "" {
		m.SubjectPrefix = "[sftpgw]"
	}
	if len(m.Events) == 0 && m.Digest == nil {
		return nil, nil, fmt.Errorf("alerts: email %q: no events and no digest: it would never send anything", m.Name)
	}
	h, err := newQueue(Webhook{Name: m.Name, Events: m.Events, Timeout: m.Timeout, Queue: m.Queue,
		Attempts: m.Attempts, Backoff: m.Backoff, MaxBackoff: m.MaxBackoff}, log, "smtp://"+m.addr())
	if err != nil {
		return nil, nil, err
	}
	h.mail = &m
	h.send = func(ctx context.Context, it item) (bool, error) {
		msg := it.mail
		if msg == nil {
			r := renderAlert(*it.payload, m.SubjectPrefix)
			msg = &r
		}
		return sendMail(ctx, m, h.w.Timeout, *msg)
	}
	var d *digest
	if m.Digest != nil {
		if d, err = newDigest(*m.Digest, h, source, clock, log); err != nil {
			return nil, nil, fmt.Errorf("alerts: email %q: %w", m.Name, err)
		}
	}
	return h, d, nil
}

// sendMail makes one SMTP delivery. Errors never carry the password
// (go-mail logs nothing unless asked, and its errors name the step).
func sendMail(ctx context.Context, m Email, timeout time.Duration, msg message) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tc := &tls.Config{ServerName: m.Host, RootCAs: m.RootCAs, MinVersion: tls.VersionTLS12}
	// Our own dialer: the connection closes when ctx ends, so a server
	// that accepts and never answers cannot hold a delivery (or Close)
	// beyond the timeout; go-mail's deadlines only cover the dial.
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		var err error
		nd := &net.Dialer{}
		if m.TLS == TLSImplicit {
			c, err = (&tls.Dialer{NetDialer: nd, Config: tc}).DialContext(dctx, network, addr)
		} else {
			c, err = nd.DialContext(dctx, network, addr)
		}
		if err == nil {
			context.AfterFunc(ctx, func() { c.Close() })
		}
		return c, err
	}
	opts := []mail.Option{mail.WithPort(m.Port), mail.WithTimeout(timeout), mail.WithTLSConfig(tc), mail.WithDialContextFunc(dial)}
	switch m.TLS {
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	case TLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	if m.Username != "" {
		auth := mail.SMTPAuthAutoDiscover
		if m.TLS == TLSImplicit {
			// go-mail cannot tell that our dialer's connection is TLS
			// already, so its discovery would refuse PLAIN here.
			auth = mail.SMTPAuthPlain
		}
		opts = append(opts, mail.WithSMTPAuth(auth),
			mail.WithUsername(m.Username), mail.WithPassword(string(m.Password)))
	}
	c, err := mail.NewClient(m.Host, opts...)
	if err != nil {
		return false, errors.New("smtp client: " + scrub(err.Error(), m.Password))
	}
	mm := mail.NewMsg()
	if err := mm.From(m.From); err != nil {
		return false, fmt.Errorf("from address: %v", err)
	}
	if err := mm.To(m.To...); err != nil {
		return false, fmt.Errorf("to address: %v", err)
	}
	mm.Subject(msg.subject)
	mm.SetDate()
	mm.SetMessageID()
	mm.SetBodyString(mail.TypeTextPlain, msg.text)
	if msg.html != "" {
		mm.AddAlternativeString(mail.TypeTextHTML, msg.html)
	}
	if err := c.DialAndSendWithContext(ctx, mm); err != nil {
		reason := scrub(err.Error(), m.Password)
		if ctx.Err() != nil {
			reason = fmt.Sprintf("no answer within %s (%s)", timeout, reason)
		}
		return retryable(err), errors.New(reason)
	}
	return false, nil
}

// retryable: a network fault or a 4xx answer may pass later; a refused
// login, a server without STARTTLS or a refused address stays so, and
// retrying a bad login only helps lock the account.
func retryable(err error) bool {
	var se *mail.SendError
	if errors.As(err, &se) {
		return se.IsTemp() || (se.Reason != mail.ErrSMTPMailFrom && se.Reason != mail.ErrSMTPRcptTo)
	}
	msg := err.Error()
	return !strings.Contains(msg, "SMTP AUTH") && !strings.Contains(msg, "does not support STARTTLS")
}

// scrub removes the password from a server's or library's text, in case
// either ever echoes it.
func scrub(s string, pw []byte) string {
	if len(pw) > 0 {
		s = strings.ReplaceAll(s, string(pw), "[redacted]")
	}
	return s
}

// TestResult is what one sink said to `sftpgw alert test`.
type TestResult struct {
	Sink, Kind, Target string
	Took               time.Duration
	Err                error
}

// Test sends one test alert through every sink now, without the queue,
// and reports each outcome.
func (s *Sender) Test(ctx context.Context) []TestResult {
	now := s.now()
	p := Payload{ID: newID(), Alert: "test", Time: audit.FormatTime(now), Source: s.source,
		Event: audit.Event{Time: now.UTC(), Kind: "admin", Op: "alert_test", Result: "ok",
			Detail: "test message from sftpgw alert test"}}
	var out []TestResult
	for _, h := range s.hooks {
		kind := "webhook"
		if h.mail != nil {
			kind = "email"
		}
		it := item{name: "test", payload: &p}
		if h.mail == nil {
			body, _ := json.Marshal(p)
			it.body = body
		}
		start := time.Now()
		_, err := h.send(ctx, it)
		out = append(out, TestResult{Sink: h.w.Name, Kind: kind, Target: h.target, Took: time.Since(start), Err: err})
	}
	return out
}
