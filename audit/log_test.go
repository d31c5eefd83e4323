package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestMarshalJSONTimeUTCMillis(t *testing.T) {
	loc := time.FixedZone("X", 3*3600)
	e := Event{Time: time.Date(2026, 11, 23, 14, 5, 12, 123456789, loc), Kind: "auth", User: "bob", Result: "ok"}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-23T11:05:12.123Z","kind":"auth","user":"bob","result":"ok"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Time.Equal(e.Time.Truncate(time.Millisecond)) || back.User != "bob" {
		t.Fatalf("round trip: %+v", back)
	}
	// Pointer receivers use the same encoding.
	if b2, _ := json.Marshal(&e); string(b2) != want {
		t.Fatalf("pointer: %s", b2)
	}
}

func TestLogRecorder(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true})
	r := NewLogRecorder(log)
	r.Record(Event{Kind: "file", Op: "upload", User: "alice", Path: "/in/a.csv", Bytes: 42, DurationMS: 1.5, Result: "ok"})
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["@message"] != "audit" || line["kind"] != "file" || line["path"] != "/in/a.csv" ||
		line["bytes"] != float64(42) || line["duration_ms"] != 1.5 || line["result"] != "ok" {
		t.Fatalf("fields: %v", line)
	}
	ts, _ := line["time"].(string)
	if _, err := time.Parse(TimeLayout, ts); err != nil || !strings.HasSuffix(ts, "Z") {
		t.Fatalf("time %q not stamped in %s", ts, TimeLayout)
	}
	for _, k := range []string{"session", "target", "error_class", "detail", "key_fp"} {
		if _, ok := line[k]; ok {
			t.Errorf("empty field %q logged", k)
		}
	}
}

func TestMultiStampsOnceAndFansOut(t *testing.T) {
	var got [][]Event
	mk := func() Recorder {
		i := len(got)
		got = append(got, nil)
		return RecorderFunc(func(e Event) { got[i] = append(got[i], e) })
	}
	a, b := mk(), mk()
	m := Multi(a, nil, Multi(b))
	m.Record(Event{Kind: "connect"})
	if len(got[0]) != 1 || len(got[1]) != 1 {
		t.Fatalf("fan out: %v", got)
	}
	if got[0][0].Time.IsZero() || !got[0][0].Time.Equal(got[1][0].Time) || got[0][0].Time.Location() != time.UTC {
		t.Fatalf("times %v / %v", got[0][0].Time, got[1][0].Time)
	}
	if Multi(a) == nil {
		t.Fatal("Multi of one is nil")
	}
	Multi().Record(Event{}) // no recorders: no panic
}
