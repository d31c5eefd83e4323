package alerts

import (
	"context"
	"fmt"
	"html"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
)

// Clock is where alerts and digests take the time from; tests drive a
// fake one so that a "daily" digest does not take a day.
type Clock interface {
	Now() time.Time
	// NewTimer fires once after d; stop cancels it.
	NewTimer(d time.Duration) (c <-chan time.Time, stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// DigestSchedule configures the HR digest of an email sink.
type DigestSchedule struct {
	// DailyAt is the daily send time, "HH:MM" in Location (default UTC).
	DailyAt  string
	Location *time.Location
	// Hourly also sends, at DailyAt's minute of every other hour, a digest
	// when something happened in that hour (an empty hour sends nothing).
	Hourly bool
	// Roles whose uploads are listed (the applicants); empty: every role.
	Roles []string
	// Locate maps a user's file to the object behind it, as
	// "storage:key", so that a download by HR and a retention delete
	// (which see other paths) find the applicant's upload. ok is false
	// for a user or role the configuration does not know.
	Locate func(user, role, path string) (object string, ok bool)
	// Retention is the retention period of a role's storage (0: none).
	Retention func(role string) time.Duration
	// MaxFiles bounds the files followed at once (default 100000).
	MaxFiles int
}

// digest follows uploads from the audit events and sends the summary.
type digest struct {
	s      DigestSchedule
	h, m   int
	sink   *hook
	source string
	clock  Clock
	log    hclog.Logger

	mu      sync.Mutex
	files   map[string]*tracked // by object
	deleted []tracked           // deleted by retention unread, since the last digest
	skipped int                 // uploads not followed because MaxFiles was reached
	last    time.Time           // when the last digest was built (zero: none yet)
}

type tracked struct {
	user, path       string
	size             int64
	received         time.Time
	expires, removed time.Time // expires zero: no retention
	collected        bool
	reported         bool // already listed as received
}

func newDigest(s DigestSchedule, sink *hook, source string, clock Clock, log hclog.Logger) (*digest, error) {
	if s.DailyAt == "" {
		s.DailyAt = "08:00"
	}
	var h, m int
	if n, err := fmt.Sscanf(s.DailyAt, "%d:%d", &h, &m); n != 2 || err != nil || h < 0 || h > 23 || m < 0 || m > 59 || len(s.DailyAt) != 5 {
		return nil, fmt.Errorf("digest: daily_at %q is not HH:MM", s.DailyAt)
	}
	if s.Location == nil {
		s.Location = time.UTC
	}
	if s.Locate == nil {
		s.Locate = func(user, _, path string) (string, bool) { return user + ":" + path, true }
	}
	if s.Retention == nil {
		s.Retention = func(string) time.Duration { return 0 }
	}
	if s.MaxFiles <= 0 {
		s.MaxFiles = 100000
	}
	return &digest{s: s, h: h, m: m, sink: sink, source: source, clock: clock, log: log, files: map[string]*tracked{}}, nil
}

// observe updates the followed files from one audit event (the same
// stream that raises alerts: there is no second source of truth).
func (d *digest) observe(e audit.Event) {
	ok := e.Result == "ok"
	switch {
	case e.Kind == "file" && ok && (e.Op == "upload" || e.Op == "overwrite"):
		if len(d.s.Roles) > 0 && !slices.Contains(d.s.Roles, e.Role) {
			return
		}
		obj, found := d.s.Locate(e.User, e.Role, e.Path)
		if !found {
			return
		}
		t := tracked{user: e.User, path: e.Path, size: e.Bytes, received: e.Time}
		if r := d.s.Retention(e.Role); r > 0 {
			t.expires = e.Time.Add(r)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, had := d.files[obj]; !had && len(d.files) >= d.s.MaxFiles {
			d.skipped++
			return
		}
		d.files[obj] = &t
	case e.Kind == "file" && ok && e.Op == "download" && e.Detail != "partial read":
		obj, found := d.s.Locate(e.User, e.Role, e.Path)
		d.mu.Lock()
		defer d.mu.Unlock()
		// The applicant reading a file back has not collected it.
		if t := d.files[obj]; found && t != nil && t.user != e.User {
			t.collected = true
		}
	case e.Kind == "file" && ok && e.Op == "delete":
		obj, found := d.s.Locate(e.User, e.Role, e.Path)
		d.mu.Lock()
		defer d.mu.Unlock()
		if found {
			delete(d.files, obj)
		}
	case e.Kind == "file" && ok && e.Op == "rename":
		from, f1 := d.s.Locate(e.User, e.Role, e.Path)
		to, f2 := d.s.Locate(e.User, e.Role, e.Target)
		d.mu.Lock()
		defer d.mu.Unlock()
		if t := d.files[from]; f1 && f2 && t != nil {
			delete(d.files, from)
			// The applicant still sees it under the new name.
			if t.user == e.User {
				t.path = e.Target
			}
			d.files[to] = t
		}
	case e.Kind == "retention" && ok && e.Op == "retention_delete":
		// The sweeper names its storage block first in the detail.
		store, _, cut := strings.Cut(strings.TrimPrefix(e.Detail, "storage "), ":")
		if !cut {
			return
		}
		obj := store + ":" + e.Path
		d.mu.Lock()
		defer d.mu.Unlock()
		if t := d.files[obj]; t != nil {
			delete(d.files, obj)
			if !t.collected {
				t.removed = e.Time
				d.deleted = append(d.deleted, *t)
			}
		}
	}
}

// next returns the next send time after now and whether it is the daily one.
func (d *digest) next(now time.Time) (time.Time, bool) {
	now = now.In(d.s.Location)
	daily := time.Date(now.Year(), now.Month(), now.Day(), d.h, d.m, 0, 0, d.s.Location)
	if !daily.After(now) {
		daily = time.Date(now.Year(), now.Month(), now.Day()+1, d.h, d.m, 0, 0, d.s.Location)
	}
	if !d.s.Hourly {
		return daily, true
	}
	hourly := now.Truncate(time.Hour).Add(time.Duration(d.m) * time.Minute)
	for !hourly.After(now) {
		hourly = hourly.Add(time.Hour)
	}
	if !hourly.Before(daily) {
		return daily, true
	}
	return hourly, false
}

func (d *digest) run(ctx context.Context) {
	for {
		now := d.clock.Now()
		at, daily := d.next(now)
		c, stop := d.clock.NewTimer(at.Sub(now))
		select {
		case <-ctx.Done():
			stop()
			return
		case <-c:
		}
		if msg, ok := d.build(at, daily); ok {
			d.sink.enqueue(item{name: "digest", mail: &msg})
		}
	}
}

// build renders the digest for time now and starts the next period. An
// hourly digest with nothing new is not sent (ok false).
func (d *digest) build(now time.Time, daily bool) (message, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	type section struct{ received, waiting, deleted []tracked }
	per := map[string]*section{}
	get := func(u string) *section {
		if per[u] == nil {
			per[u] = &section{}
		}
		return per[u]
	}
	fresh := 0
	for _, t := range d.files {
		if !t.reported {
			get(t.user).received = append(get(t.user).received, *t)
			fresh++
		}
		if !t.collected {
			get(t.user).waiting = append(get(t.user).waiting, *t)
		}
	}
	for _, t := range d.deleted {
		get(t.user).deleted = append(get(t.user).deleted, t)
	}
	if !daily && fresh == 0 && len(d.deleted) == 0 {
		return message{}, false
	}
	since := d.last
	d.last = now
	// Start the next period: what was listed as received is not again,
	// and a collected file needs no more mention.
	for k, t := range d.files {
		t.reported = true
		if t.collected {
			delete(d.files, k)
		}
	}
	d.deleted = nil
	skipped := d.skipped
	d.skipped = 0

	loc := d.s.Location
	ts := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04 MST") }
	kind := "Daily"
	if !daily {
		kind = "Hourly"
	}
	users := make([]string, 0, len(per))
	for u := range per {
		users = append(users, u)
	}
	slices.Sort(users)
	byPath := func(a, b tracked) int { return strings.Compare(a.path, b.path) }

	var tx, hx strings.Builder
	head := fmt.Sprintf("%s digest of %s at %s", kind, orDash(d.source), ts(now))
	if since.IsZero() {
		head += " (first since start)"
	} else {
		head += " (since " + ts(since) + ")"
	}
	tx.WriteString(head + "\n\n")
	hx.WriteString("<html><body>\n<p>" + html.EscapeString(head) + "</p>\n")
	if len(users) == 0 {
		tx.WriteString("Nothing received, waiting or deleted.\n")
		hx.WriteString("<p>Nothing received, waiting or deleted.</p>\n")
	}
	list := func(title string, ts []tracked, line func(tracked) string) {
		if len(ts) == 0 {
			return
		}
		slices.SortFunc(ts, byPath)
		fmt.Fprintf(&tx, "  %s (%d):\n", title, len(ts))
		fmt.Fprintf(&hx, "<p>%s (%d):</p>\n<ul>\n", html.EscapeString(title), len(ts))
		for _, t := range ts {
			l := line(t)
			tx.WriteString("    - " + l + "\n")
			hx.WriteString("<li>" + html.EscapeString(l) + "</li>\n")
		}
		hx.WriteString("</ul>\n")
	}
	for _, u := range users {
		s := per[u]
		fmt.Fprintf(&tx, "Applicant %s\n", u)
		fmt.Fprintf(&hx, "<h3>Applicant %s</h3>\n", html.EscapeString(u))
		list("Received", s.received, func(t tracked) string {
			return fmt.Sprintf("%s, %s, at %s", t.path, humanSize(t.size), ts(t.received))
		})
		list("Not collected yet", s.waiting, func(t tracked) string {
			if t.expires.IsZero() {
				return fmt.Sprintf("%s, %s, received %s, no retention", t.path, humanSize(t.size), ts(t.received))
			}
			return fmt.Sprintf("%s, %s, received %s, deleted by retention from %s", t.path, humanSize(t.size), ts(t.received), ts(t.expires))
		})
		list("Deleted by retention unread", s.deleted, func(t tracked) string {
			return fmt.Sprintf("%s, %s, received %s, deleted %s", t.path, humanSize(t.size), ts(t.received), ts(t.removed))
		})
		tx.WriteString("\n")
	}
	if skipped > 0 {
		fmt.Fprintf(&tx, "%d uploads were not followed (more than %d files at once).\n", skipped, d.s.MaxFiles)
		fmt.Fprintf(&hx, "<p>%d uploads were not followed (more than %d files at once).</p>\n", skipped, d.s.MaxFiles)
	}
	tx.WriteString("Names are the gateway's pseudonymous user names. Collect files with your SFTP client.\n")
	hx.WriteString("<p>Names are the gateway's pseudonymous user names. Collect files with your SFTP client.</p>\n</body></html>\n")
	waiting, deleted := 0, 0
	for _, s := range per {
		waiting += len(s.waiting)
		deleted += len(s.deleted)
	}
	subj := fmt.Sprintf("%s %s digest: %d received, %d waiting, %d deleted unread", d.sink.mail.SubjectPrefix,
		strings.ToLower(kind), fresh, waiting, deleted)
	return message{subject: subj, text: tx.String(), html: hx.String()}, true
}

func orDash(s string) string {
	if s == "" {
		return "sftpgw"
	}
	return s
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}

// renderAlert is the message of one alert: what happened, to whom, when.
// The event's fields are the gateway's own (pseudonymous user, path in the
// user's view); there is no link to follow.
func renderAlert(p Payload, prefix string) message {
	e := p.Event
	subj := fmt.Sprintf("%s %s", prefix, p.Alert)
	if e.User != "" {
		subj += " " + e.User
	}
	if e.Path != "" {
		subj += " " + e.Path
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Alert:   %s\nTime:    %s\nGateway: %s\n", p.Alert, p.Time, orDash(p.Source))
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-8s %s\n", k+":", v)
		}
	}
	field("User", e.User)
	field("Role", e.Role)
	field("Client", e.Client)
	field("Op", e.Op)
	field("Path", e.Path)
	field("Target", e.Target)
	if e.Bytes > 0 {
		field("Size", humanSize(e.Bytes))
	}
	field("Result", e.Result)
	field("Detail", e.Detail)
	field("Session", e.Session)
	fmt.Fprintf(&b, "Alert id: %s\n", p.ID)
	return message{subject: subj, text: b.String()}
}
