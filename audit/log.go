package audit

import (
	"encoding/json"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TimeLayout is how every audit time is written: UTC, RFC 3339 with exactly
// three fractional digits, so that lines sort and compare as text.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime renders t in TimeLayout (converted to UTC first).
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Stamp returns e with Time set to now when it is zero, and always in UTC.
func Stamp(e Event, now func() time.Time) Event {
	if e.Time.IsZero() {
		if now == nil {
			now = time.Now
		}
		e.Time = now()
	}
	e.Time = e.Time.UTC()
	return e
}

// MarshalJSON writes the event with its time in TimeLayout; the default
// time.Time encoding would keep the local zone and nanoseconds, which makes
// lines from different hosts hard to compare.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event // no methods: avoids recursing into MarshalJSON
	return json.Marshal(struct {
		Time string `json:"time"` // shallower than plain.Time, so it wins
		plain
	}{FormatTime(e.Time), plain(e)})
}

// logFields lists the non-empty fields of e as hclog key/value pairs, keyed
// like the JSON encoding so that log lines and shipped lines read the same.
func logFields(e Event) []any {
	kv := make([]any, 0, 24)
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k, v)
		}
	}
	kv = append(kv, "time", FormatTime(e.Time))
	add("kind", e.Kind)
	add("session", e.Session)
	add("user", e.User)
	add("role", e.Role)
	add("client", e.Client)
	add("client_version", e.ClientVer)
	add("key_fp", e.KeyFP)
	add("kex", e.Kex)
	add("cipher", e.Cipher)
	add("method", e.Method)
	add("op", e.Op)
	add("path", e.Path)
	add("target", e.Target)
	if e.Bytes != 0 {
		kv = append(kv, "bytes", e.Bytes)
	}
	if e.DurationMS != 0 {
		kv = append(kv, "duration_ms", e.DurationMS)
	}
	add("result", e.Result)
	add("error_class", e.ErrClass)
	add("detail", e.Detail)
	return kv
}

type logRecorder struct{ log hclog.Logger }

// NewLogRecorder writes every event as one structured operator log line with
// message "audit" (JSON when the logger is configured for JSON).
func NewLogRecorder(log hclog.Logger) Recorder {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return logRecorder{log: log}
}

func (r logRecorder) Record(e Event) {
	r.log.Info("audit", logFields(Stamp(e, nil))...)
}

type multi []Recorder

// Multi fans every event out to all non-nil recorders, in order. The time is
// stamped once here so that every sink sees the same instant.
func Multi(rs ...Recorder) Recorder {
	var m multi
	for _, r := range rs {
		switch r := r.(type) {
		case nil:
		case multi:
			m = append(m, r...)
		default:
			m = append(m, r)
		}
	}
	if len(m) == 1 {
		return m[0]
	}
	return m
}

func (m multi) Record(e Event) {
	e = Stamp(e, nil)
	for _, r := range m {
		r.Record(e)
	}
}
