package posture

import (
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs/s3store"
)

func TestPolicyRecognition(t *testing.T) {
	b := &bucket{name: "files", t: Target{S3: s3store.Config{Region: "eu-west-1"}}}
	cases := []struct {
		name, src        string
		tls, sse, public bool
	}{
		{"empty", `{"Version":"2012-10-17","Statement":[]}`, false, false, false},
		{"ours as AWS returns it", `{"Version":"2012-10-17","Statement":[
			{"Sid":"A","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::files","arn:aws:s3:::files/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}},
			{"Sid":"B","Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::files/*","Condition":{"Null":{"s3:x-amz-server-side-encryption":"true"}}}]}`, true, true, false},
		{"as MinIO normalises it", `{"Version":"2012-10-17","Statement":[
			{"Sid":"A","Effect":"Deny","Principal":{"AWS":["*"]},"Action":["s3:*"],"Resource":["arn:aws:s3:::files/*"],"Condition":{"Bool":{"aws:SecureTransport":["false"]}}},
			{"Sid":"B","Effect":"Deny","Principal":{"AWS":["*"]},"Action":["s3:PutObject"],"Resource":["arn:aws:s3:::files/*"],"Condition":{"Null":{"s3:x-amz-server-side-encryption":[true]}}}]}`, true, true, false},
		{"single statement, StringNotEquals form", `{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::files/*","Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":["AES256","aws:kms"]}}}}`, false, true, false},
		{"other bucket's resource", `{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::other/*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`, false, false, false},
		{"one principal only", `{"Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`, false, false, false},
		{"allow, not deny", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`, false, false, false},
		{"public read", `{"Statement":[{"Sid":"Open","Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::files/*"}]}`, false, false, true},
		{"everyone but from one network", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}}]}`, false, false, false},
	}
	for _, c := range cases {
		doc, err := parsePolicy(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		_, tls := doc.denies(b, "s3:GetObject", "Bool", "aws:SecureTransport", "false")
		_, sse := doc.denies(b, "s3:PutObject", "Null", "s3:x-amz-server-side-encryption", "true")
		if !sse {
			_, sse = doc.deniesOtherSSE(b)
		}
		_, public := doc.publicAllow()
		if tls != c.tls || sse != c.sse || public != c.public {
			t.Errorf("%s: tls %v sse %v public %v, want %v %v %v", c.name, tls, sse, public, c.tls, c.sse, c.public)
		}
	}
	if _, err := parsePolicy("not json"); err == nil {
		t.Error("garbage policy parsed")
	}
}

func TestARNPartitionAndDays(t *testing.T) {
	for region, want := range map[string]string{"eu-west-1": "arn:aws:s3:::b", "cn-north-1": "arn:aws-cn:s3:::b", "us-gov-west-1": "arn:aws-us-gov:s3:::b"} {
		b := &bucket{name: "b", t: Target{S3: s3store.Config{Region: region}}}
		if b.arn() != want {
			t.Errorf("%s: %s", region, b.arn())
		}
	}
	for d, want := range map[time.Duration]int32{time.Second: 1, 24 * time.Hour: 1, 25 * time.Hour: 2, 7 * 24 * time.Hour: 7} {
		if got := ExpirationDays(d); got != want {
			t.Errorf("%s: %d days, want %d", d, got, want)
		}
	}
	if !loopback("http://127.0.0.1:9000") || !loopback("http://localhost:9000") || loopback("http://10.0.0.5:9000") {
		t.Error("loopback detection")
	}
}

func TestPrintShowsFixes(t *testing.T) {
	var b strings.Builder
	Print(&b, []Result{{Storage: "files", Bucket: "bk", Check: "versioning", Status: Fail, Detail: "never enabled", Fix: "do X"},
		{Storage: "files", Bucket: "bk", Check: "MFA delete", Status: Unsupported, Detail: "MinIO"}})
	out := b.String()
	for _, s := range []string{"versioning", "FAIL", "fix: do X", "unsupported by endpoint", "1 failed", "1 unsupported"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if Failures([]Result{{Status: Unsupported}, {Status: Pass}}, false) != 0 || Failures([]Result{{Status: Unsupported}}, true) != 1 {
		t.Error("Failures")
	}
}

func TestAbortDaysExceedResumeWindow(t *testing.T) {
	for w, want := range map[time.Duration]int32{0: 1, time.Hour: 1, 24 * time.Hour: 2, 36 * time.Hour: 2, 7 * 24 * time.Hour: 8} {
		if got := AbortDays(w); got != want || (w > 0 && time.Duration(got)*24*time.Hour <= w) {
			t.Errorf("resume_window %s: abort after %d days, want %d (more than the window)", w, got, want)
		}
	}
}
