package posture

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Sids of the statements `check --fix` adds (and replaces on a re-run).
const (
	sidTLS = "SftpgwDenyInsecureTransport"
	sidSSE = "SftpgwDenyUnencryptedUploads"
)

// policyDoc is a bucket policy with its statements kept verbatim, so that
// adding ours never rewrites anybody else's.
type policyDoc struct {
	Version   string            `json:"Version"`
	ID        string            `json:"Id,omitempty"`
	Statement []json.RawMessage `json:"Statement"`
	parsed    []statement
}

type statement struct {
	Sid       string                        `json:"Sid,omitempty"`
	Effect    string                        `json:"Effect"`
	Principal json.RawMessage               `json:"Principal,omitempty"`
	Action    strList                       `json:"Action,omitempty"`
	Resource  strList                       `json:"Resource,omitempty"`
	Condition map[string]map[string]strList `json:"Condition,omitempty"`
}

// strList reads a policy value that may be a string, a boolean, a number
// or a list of those (servers normalise differently: MinIO returns [true]).
type strList []string

func (l *strList) UnmarshalJSON(b []byte) error {
	var many []any
	if err := json.Unmarshal(b, &many); err != nil {
		var one any
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		many = []any{one}
	}
	for _, v := range many {
		*l = append(*l, fmt.Sprint(v))
	}
	return nil
}

func (l strList) has(s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func parsePolicy(src string) (*policyDoc, error) {
	var raw struct {
		Version   string          `json:"Version"`
		ID        string          `json:"Id"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal([]byte(src), &raw); err != nil {
		return nil, fmt.Errorf("bucket policy is not JSON: %w", err)
	}
	doc := &policyDoc{Version: raw.Version, ID: raw.ID}
	if t := bytes.TrimSpace(raw.Statement); len(t) > 0 && t[0] == '{' {
		doc.Statement = []json.RawMessage{raw.Statement} // a single statement, not a list
	} else if len(t) > 0 {
		if err := json.Unmarshal(raw.Statement, &doc.Statement); err != nil {
			return nil, fmt.Errorf("bucket policy: Statement: %w", err)
		}
	}
	for _, s := range doc.Statement {
		var st statement
		if err := json.Unmarshal(s, &st); err != nil {
			return nil, fmt.Errorf("bucket policy: statement: %w", err)
		}
		doc.parsed = append(doc.parsed, st)
	}
	return doc, nil
}

// loadPolicy fetches the bucket policy once per round of checks.
func (b *bucket) loadPolicy(ctx context.Context) (*policyDoc, error) {
	if b.policy != nil || b.polErr != nil {
		return b.policy, b.polErr
	}
	out, err := b.c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: &b.name})
	switch {
	case errCode(err) == "NoSuchBucketPolicy":
		b.policy = &policyDoc{Version: "2012-10-17"}
	case err != nil:
		b.polErr = err
	default:
		b.policy, b.polErr = parsePolicy(*out.Policy)
	}
	return b.policy, b.polErr
}

// everyone reports a Principal of "*" or {"AWS": "*"}.
func everyone(p json.RawMessage) bool {
	var s string
	if json.Unmarshal(p, &s) == nil {
		return s == "*"
	}
	var m map[string]strList
	if json.Unmarshal(p, &m) == nil {
		for k, v := range m {
			if strings.EqualFold(k, "AWS") && v.has("*") {
				return true
			}
		}
	}
	return false
}

func (st statement) coversAction(action string) bool {
	return st.Action.has("*") || st.Action.has("s3:*") || st.Action.has(action)
}

// coversObjects reports a Resource that includes every object of b.
func (st statement) coversObjects(b *bucket) bool {
	arn := b.arn()
	return st.Resource.has("*") || st.Resource.has(arn+"/*") || st.Resource.has(arn+"*") ||
		st.Resource.has(arn[:strings.LastIndex(arn, ":")+1]+"*")
}

// condition returns the values of Condition[op][key], names compared
// case-insensitively as AWS does.
func (st statement) condition(op, key string) (strList, bool) {
	for o, kv := range st.Condition {
		if !strings.EqualFold(o, op) {
			continue
		}
		for k, v := range kv {
			if strings.EqualFold(k, key) {
				return v, true
			}
		}
	}
	return nil, false
}

// denies finds a Deny for everyone of action on b's objects under the
// condition op {key: value}.
func (d *policyDoc) denies(b *bucket, action, op, key, value string) (string, bool) {
	for _, st := range d.parsed {
		if !strings.EqualFold(st.Effect, "Deny") || !everyone(st.Principal) || !st.coversAction(action) || !st.coversObjects(b) {
			continue
		}
		if v, ok := st.condition(op, key); ok && v.has(value) {
			return st.Sid, true
		}
	}
	return "", false
}

// deniesOtherSSE finds the other usual form: deny PutObject unless the
// encryption header names a server-side algorithm (a missing header makes
// StringNotEquals true, so it denies unencrypted uploads too).
func (d *policyDoc) deniesOtherSSE(b *bucket) (string, bool) {
	for _, st := range d.parsed {
		if !strings.EqualFold(st.Effect, "Deny") || !everyone(st.Principal) || !st.coversAction("s3:PutObject") || !st.coversObjects(b) {
			continue
		}
		v, ok := st.condition("StringNotEquals", "s3:x-amz-server-side-encryption")
		if !ok || len(v) == 0 {
			continue
		}
		only := true
		for _, x := range v {
			only = only && (x == "AES256" || x == "aws:kms" || x == "aws:kms:dsse")
		}
		if only {
			return st.Sid, true
		}
	}
	return "", false
}

// publicAllow finds an unconditional Allow for everyone.
func (d *policyDoc) publicAllow() (string, bool) {
	for _, st := range d.parsed {
		if strings.EqualFold(st.Effect, "Allow") && everyone(st.Principal) && len(st.Condition) == 0 {
			return st.Sid, true
		}
	}
	return "", false
}

func denyInsecureTransport(b *bucket) map[string]any {
	return map[string]any{
		"Sid": sidTLS, "Effect": "Deny", "Principal": "*", "Action": "s3:*",
		"Resource":  []string{b.arn(), b.arn() + "/*"},
		"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
	}
}

func denyUnencrypted(b *bucket) map[string]any {
	return map[string]any{
		"Sid": sidSSE, "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
		"Resource":  b.arn() + "/*",
		"Condition": map[string]any{"Null": map[string]any{"s3:x-amz-server-side-encryption": "true"}},
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// addPolicyStatements adds (or refreshes) our deny statements, keeping
// every other statement as it was. The TLS statement is left out for an
// http endpoint: it would deny the gateway's own requests.
func (b *bucket) addPolicyStatements(ctx context.Context) error {
	doc, err := b.loadPolicy(ctx)
	if err != nil {
		return err
	}
	var stmts []json.RawMessage
	for i, st := range doc.parsed {
		if st.Sid != sidTLS && st.Sid != sidSSE {
			stmts = append(stmts, doc.Statement[i])
		}
	}
	if !plainHTTP(b) {
		stmts = append(stmts, mustJSON(denyInsecureTransport(b)))
	}
	stmts = append(stmts, mustJSON(denyUnencrypted(b)))
	out := policyDoc{Version: doc.Version, ID: doc.ID, Statement: stmts}
	if out.Version == "" {
		out.Version = "2012-10-17"
	}
	_, err = b.c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: &b.name, Policy: stringPtr(string(mustJSON(out)))})
	return err
}

func stringPtr(s string) *string { return &s }
