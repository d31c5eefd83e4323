// Package audit defines the audit Event (a connection, an authentication
// step or a file operation decided by the VFS choke point), the Recorder
// interface every consumer of events implements, and two small recorders:
// NewLogRecorder writes events to the operator log and Multi fans them out.
//
// Shipping events to the audit bucket as hash-chained, signed batches is
// the job of package audit/trail; metrics and alerts are Recorders too.
package audit

import (
	"encoding/hex"
	"time"
)

// Event is one audited fact: a connection, an authentication step or a file
// operation decided by the VFS choke point. It never carries secrets.
type Event struct {
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"` // connect, auth, file, session_end, admin
	Session    string    `json:"session,omitempty"`
	User       string    `json:"user,omitempty"`
	Role       string    `json:"role,omitempty"`
	Client     string    `json:"client,omitempty"` // ip:port of the real client
	ClientVer  string    `json:"client_version,omitempty"`
	KeyFP      string    `json:"key_fp,omitempty"` // SHA256:...
	Kex        string    `json:"kex,omitempty"`
	Cipher     string    `json:"cipher,omitempty"`
	Method     string    `json:"method,omitempty"` // publickey, keyboard-interactive
	Op         string    `json:"op,omitempty"`     // upload, download, list, ...
	Path       string    `json:"path,omitempty"`
	Target     string    `json:"target,omitempty"` // rename target
	Bytes      int64     `json:"bytes,omitempty"`
	DurationMS float64   `json:"duration_ms,omitempty"`
	Result     string    `json:"result"`                // ok, denied, error, failure
	ErrClass   string    `json:"error_class,omitempty"` // permission, not_found, limit, store, ...
	Detail     string    `json:"detail,omitempty"`      // short human text, never secrets
}

// Recorder receives events. Implementations must not block transfers for long.
type Recorder interface {
	Record(Event)
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(Event)

// Record calls f(e).
func (f RecorderFunc) Record(e Event) { f(e) }

// Discard drops every event (tests and tools that audit nothing).
var Discard Recorder = RecorderFunc(func(Event) {})

// SessionID derives the short session id used in every event of one SSH
// connection from the SSH exchange hash (unique per connection, not secret).
func SessionID(sshSessionID []byte) string {
	const n = 8
	if len(sshSessionID) > n {
		sshSessionID = sshSessionID[:n]
	}
	return hex.EncodeToString(sshSessionID)
}
