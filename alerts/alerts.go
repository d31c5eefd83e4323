// Package alerts turns audit events into signed webhook calls.
//
// A Sender is an audit.Recorder: the gateway feeds it every event through
// audit.Multi, it picks the events a webhook subscribed to and queues them.
// Record never blocks on the network: each webhook has its own bounded
// queue and delivery goroutine, and when a receiver is slow or down the
// queue drops its oldest alert (counted and logged) instead of slowing a
// transfer or a login.
//
// Each alert is one JSON POST whose body is signed with HMAC-SHA256 under
// the webhook's secret: header X-Sftpgw-Signature: sha256=<hex>. Failed
// deliveries (network errors, 408, 429, 5xx) are retried with exponential
// backoff; other 4xx answers are final.
package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
)

// The alert names a webhook can subscribe to.
const (
	UploadComplete    = "upload_complete"
	Download          = "download"
	Denied            = "denied"
	LoginFailureBurst = "login_failure_burst"
	Lockout           = "lockout"
	MFALock           = "mfa_lock"
	RetentionDelete   = "retention_delete"
	PostureFailure    = "posture_failure"
	AuditStuck        = "audit_stuck"
)

// Names are all alert names, in documentation order.
var Names = []string{UploadComplete, Download, Denied, LoginFailureBurst, Lockout, MFALock, RetentionDelete, PostureFailure, AuditStuck}

// Classify returns the alerts an audit event raises (usually none or one).
//
//   - upload_complete: a file upload or overwrite that committed (result ok);
//   - download: a complete download (a partial read does not count);
//   - denied: an operation of a logged-in session refused by policy (file
//     operations and SSH requests such as shell or forwarding). Refused
//     connections (a banned source retrying, overload) do not alert: an
//     attack would flood the queue, and its ban already raised "lockout";
//   - login_failure_burst: the auth failure that completed a burst of
//     failures for one user (authn notes it in the event's detail);
//   - lockout: the auth failure that started a ban of a source address or
//     of a user from a source (refusals during the ban do not repeat it);
//   - mfa_lock: the failed verification code that locked an account's
//     second factor (from all sources together): someone holds that
//     account's key and is guessing codes, so rotate the key;
//   - retention_delete: an object removed by the retention sweeper;
//   - posture_failure: a bucket security check that failed at start (or
//     storage that could not be reached);
//   - audit_stuck: the audit trail has not reached its bucket for longer
//     than the threshold (events wait in the local spool).
func Classify(e audit.Event) []string {
	var out []string
	switch {
	case e.Kind == "file" && (e.Op == "upload" || e.Op == "overwrite") && e.Result == "ok":
		out = append(out, UploadComplete)
	case e.Kind == "file" && e.Op == "download" && e.Result == "ok" && e.Detail != "partial read":
		out = append(out, Download)
	case e.Kind == "retention" && e.Op == "retention_delete" && e.Result == "ok":
		out = append(out, RetentionDelete)
	case e.Kind == "file" && e.Result == "denied":
		out = append(out, Denied)
	case e.Kind == "admin" && e.Op == "posture_check" && e.Result == "failure":
		out = append(out, PostureFailure)
	case e.Kind == "admin" && e.Op == "audit_stuck" && e.Result == "failure":
		out = append(out, AuditStuck)
	case e.Kind == "auth" && e.Result == "failure":
		if strings.Contains(e.Detail, "login failure burst") {
			out = append(out, LoginFailureBurst)
		}
		if strings.Contains(e.Detail, " banned for ") || strings.Contains(e.Detail, "user banned from this source for ") {
			out = append(out, Lockout)
		}
		if strings.Contains(e.Detail, authn.MFALockDetail) {
			out = append(out, MFALock)
		}
	}
	return out
}

// Webhook is one receiver.
type Webhook struct {
	Name   string
	URL    string
	Events []string // alert names, or "*" for all
	Secret []byte   // HMAC-SHA256 key; never logged
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration
	// Queue is the number of alerts waiting at most (default 1000).
	Queue int
	// Attempts per alert, the first included (default 6).
	Attempts int
	// Backoff before the first retry, doubled each time up to MaxBackoff
	// (defaults 1s and 1m).
	Backoff, MaxBackoff time.Duration
}

// Options configure a Sender.
type Options struct {
	Webhooks []Webhook
	Emails   []Email
	// Clock gives the time of alerts and digests; nil: the real clock.
	Clock Clock
	Log   hclog.Logger
	// Source names this gateway in every payload (e.g. the host name).
	Source string
	// Client sends the requests; default: a client with no global timeout
	// (each attempt has its own) that does not follow redirects.
	Client *http.Client
}

// Payload is the JSON body of one alert.
type Payload struct {
	ID     string      `json:"id"`    // unique per alert; retries reuse it
	Alert  string      `json:"alert"` // one of Names
	Time   string      `json:"time"`  // when the alert was raised (audit.TimeLayout)
	Source string      `json:"source,omitempty"`
	Event  audit.Event `json:"event"` // the audit event that raised it
}

// Sign returns the X-Sftpgw-Signature value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header in constant time (for receivers and tests).
func Verify(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// Sender delivers alerts to webhooks. It implements audit.Recorder.
type Sender struct {
	hooks  []*hook
	log    hclog.Logger
	source string
	now    func() time.Time
	clock  Clock
	// digests follow files for the email sinks with a digest schedule.
	digests     []*digest
	stopDigests func()
	dwg         sync.WaitGroup
	wg          sync.WaitGroup
	cancel      context.CancelFunc
	closed      atomic.Bool
}

// New validates o and starts one delivery goroutine per webhook.
func New(o Options) (*Sender, error) {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	s := &Sender{log: o.Log, source: o.Source, now: o.Clock.Now, clock: o.Clock, cancel: cancel}
	names := map[string]bool{}
	for _, w := range o.Webhooks {
		if names[w.Name] {
			cancel()
			return nil, fmt.Errorf("alerts: sink %q defined twice", w.Name)
		}
		names[w.Name] = true
		h, err := newHook(w, o.Client, o.Log.With("webhook", w.Name))
		if err != nil {
			cancel()
			return nil, err
		}
		s.hooks = append(s.hooks, h)
	}
	for _, m := range o.Emails {
		if names[m.Name] {
			cancel()
			return nil, fmt.Errorf("alerts: sink %q defined twice", m.Name)
		}
		names[m.Name] = true
		h, d, err := newMailHook(m, o.Source, o.Clock, o.Log.With("email", m.Name))
		if err != nil {
			cancel()
			return nil, err
		}
		s.hooks = append(s.hooks, h)
		if d != nil {
			s.digests = append(s.digests, d)
		}
	}
	for _, h := range s.hooks {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); h.run(ctx) }()
	}
	// Digests stop first at Close (their own context), so that the last
	// queued digest is still delivered.
	dctx, dcancel := context.WithCancel(ctx)
	s.stopDigests = func() { dcancel(); s.dwg.Wait() }
	for _, d := range s.digests {
		s.dwg.Add(1)
		go func() { defer s.dwg.Done(); d.run(dctx) }()
	}
	return s, nil
}

// Record queues the alerts e raises for every subscribed webhook. It only
// takes a short lock per webhook: it never waits for the network.
func (s *Sender) Record(e audit.Event) {
	if s.closed.Load() || len(s.hooks) == 0 {
		return
	}
	e = audit.Stamp(e, s.now)
	for _, d := range s.digests {
		d.observe(e)
	}
	names := Classify(e)
	if len(names) == 0 {
		return
	}
	for _, name := range names {
		var body []byte
		var p *Payload
		for _, h := range s.hooks {
			if !h.wants(name) {
				continue
			}
			if h.mail != nil {
				if p == nil {
					p = &Payload{ID: newID(), Alert: name, Time: audit.FormatTime(s.now()), Source: s.source, Event: e}
				}
				h.enqueue(item{name: name, payload: p})
				continue
			}
			if body == nil {
				var err error
				body, err = json.Marshal(Payload{ID: newID(), Alert: name, Time: audit.FormatTime(s.now()), Source: s.source, Event: e})
				if err != nil {
					s.log.Error("alert not encoded", "alert", name, "error", err.Error())
					break
				}
			}
			h.enqueue(item{name: name, body: body})
		}
	}
}

// Stats are a webhook's counters.
type Stats struct {
	Delivered, Failed, Dropped uint64
	Queued                     int
}

// SinkStats is one sink's counters with its name and kind.
type SinkStats struct {
	Name, Kind string
	Stats
}

// AllStats returns the counters of every sink, in configuration order.
func (s *Sender) AllStats() []SinkStats {
	var out []SinkStats
	for _, h := range s.hooks {
		kind := "webhook"
		if h.mail != nil {
			kind = "email"
		}
		out = append(out, SinkStats{Name: h.w.Name, Kind: kind, Stats: s.Stats(h.w.Name)})
	}
	return out
}

// Stats returns the counters of the named sink.
func (s *Sender) Stats(name string) Stats {
	for _, h := range s.hooks {
		if h.w.Name == name {
			h.mu.Lock()
			q := len(h.queue)
			h.mu.Unlock()
			return Stats{Delivered: h.delivered.Load(), Failed: h.failed.Load(), Dropped: h.dropped.Load(), Queued: q}
		}
	}
	return Stats{}
}

// Close stops accepting alerts and delivers what is queued until ctx ends;
// then it abandons the rest (logged with their number).
func (s *Sender) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.stopDigests()
	for _, h := range s.hooks {
		h.mu.Lock()
		h.stopping = true
		h.mu.Unlock()
		h.signal()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	<-done
	for _, h := range s.hooks {
		if st := s.Stats(h.w.Name); st.Queued > 0 {
			h.log.Warn("alerts not delivered at shutdown", "count", st.Queued)
		}
	}
	return ctx.Err()
}

type item struct {
	name    string
	body    []byte   // webhook: the signed JSON payload
	payload *Payload // email: what the message describes
	mail    *message // email: a prebuilt message (digest, test)
}

type hook struct {
	w      Webhook
	all    bool
	events map[string]bool
	client *http.Client
	log    hclog.Logger
	target string // scheme://host only: the path may hold a token
	// send makes one delivery attempt; retry reports whether a failure
	// may pass on a later attempt.
	send func(ctx context.Context, it item) (retry bool, err error)
	mail *Email // set for an email sink

	mu       sync.Mutex
	queue    []item
	stopping bool
	wake     chan struct{}

	delivered, failed, dropped atomic.Uint64
	lastDropLog                time.Time
}

func newHook(w Webhook, c *http.Client, log hclog.Logger) (*hook, error) {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("alerts: webhook %q: url must be http(s) with a host", w.Name)
	}
	if len(w.Secret) == 0 {
		return nil, fmt.Errorf("alerts: webhook %q: empty secret", w.Name)
	}
	h, err := newQueue(w, log, u.Scheme+"://"+u.Host)
	if err != nil {
		return nil, err
	}
	h.client = c
	h.send = func(ctx context.Context, it item) (bool, error) {
		status, err := h.post(ctx, it, Sign(h.w.Secret, it.body))
		switch {
		case err != nil:
			return true, err
		case status/100 == 2:
			return false, nil
		}
		return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500,
			fmt.Errorf("HTTP %d", status)
	}
	return h, nil
}

// newQueue applies the queueing defaults shared by every sink.
func newQueue(w Webhook, log hclog.Logger, target string) (*hook, error) {
	if w.Timeout <= 0 {
		w.Timeout = 10 * time.Second
	}
	if w.Queue <= 0 {
		w.Queue = 1000
	}
	if w.Attempts <= 0 {
		w.Attempts = 6
	}
	if w.Backoff <= 0 {
		w.Backoff = time.Second
	}
	if w.MaxBackoff <= 0 {
		w.MaxBackoff = time.Minute
	}
	h := &hook{w: w, events: map[string]bool{}, log: log, target: target, wake: make(chan struct{}, 1)}
	for _, e := range w.Events {
		switch {
		case e == "*":
			h.all = true
		case contains(Names, e):
			h.events[e] = true
		default:
			return nil, fmt.Errorf("alerts: %q: unknown event %q", w.Name, e)
		}
	}
	return h, nil
}

func (h *hook) wants(name string) bool { return h.all || h.events[name] }

func (h *hook) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// enqueue adds an alert, dropping the oldest when the queue is full: the
// newest alerts describe the present, and memory stays bounded.
func (h *hook) enqueue(it item) {
	h.mu.Lock()
	if h.stopping {
		h.mu.Unlock()
		return
	}
	var logDrop bool
	if len(h.queue) >= h.w.Queue {
		h.queue[0] = item{}
		h.queue = h.queue[1:]
		n := h.dropped.Add(1)
		// One warning per 10 s at most, with the running count.
		if now := time.Now(); n == 1 || now.Sub(h.lastDropLog) >= 10*time.Second {
			h.lastDropLog, logDrop = now, true
		}
	}
	h.queue = append(h.queue, it)
	h.mu.Unlock()
	if logDrop {
		h.log.Warn("alert queue full: dropped the oldest alert", "target", h.target, "dropped_total", h.dropped.Load(), "queue", h.w.Queue)
	}
	h.signal()
}

func (h *hook) next() (item, bool, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.queue) == 0 {
		return item{}, false, h.stopping
	}
	it := h.queue[0]
	h.queue[0] = item{}
	h.queue = h.queue[1:]
	return it, true, false
}

func (h *hook) run(ctx context.Context) {
	for {
		it, ok, stop := h.next()
		if stop {
			return
		}
		if !ok {
			select {
			case <-h.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		h.deliver(ctx, it)
		if ctx.Err() != nil {
			return
		}
	}
}

// deliver tries one alert until it is accepted, refused for good, or out
// of attempts.
func (h *hook) deliver(ctx context.Context, it item) {
	delay := h.w.Backoff
	for attempt := 1; ; attempt++ {
		retry, err := h.send(ctx, it)
		if err == nil {
			h.delivered.Add(1)
			return
		}
		reason := err.Error()
		if !retry || attempt >= h.w.Attempts || ctx.Err() != nil {
			h.failed.Add(1)
			h.log.Error("alert delivery failed", "alert", it.name, "target", h.target, "attempts", attempt, "reason", reason)
			return
		}
		h.log.Warn("alert delivery failed, retrying", "alert", it.name, "target", h.target, "attempt", attempt,
			"retry_in", delay, "reason", reason)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			h.failed.Add(1)
			return
		}
		delay = min(delay*2, h.w.MaxBackoff)
	}
}

func (h *hook) post(ctx context.Context, it item, sig string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, h.w.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.w.URL, bytes.NewReader(it.body))
	if err != nil {
		return 0, errors.New("bad request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sftpgw-alerts")
	req.Header.Set("X-Sftpgw-Alert", it.name)
	req.Header.Set("X-Sftpgw-Signature", sig)
	resp, err := h.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, which may carry a token: keep the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", h.w.Timeout)
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
