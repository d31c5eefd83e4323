package storetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
)

// testSuspendResume: a suspended upload keeps at least its complete parts,
// stays invisible (an older object at the key untouched), continues at
// exactly its Size, and once discarded cannot be resumed.
func testSuspendResume(t *testing.T, s vfs.Store) {
	rs, ok := s.(vfs.Resumer)
	if !ok {
		t.Skip("store does not resume uploads")
	}
	ctx := t.Context()
	old := Data(100)
	MustPut(t, s, "res/file", old)
	data := Data(3*PartSize + 1000)
	up, err := s.Create(ctx, "res/file", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	cut := 2*PartSize + 500 // two complete parts and half a third
	if err := write(up, data[:cut]); err != nil {
		t.Fatal(err)
	}
	su, err := up.(vfs.Suspender).Suspend(ctx)
	if err != nil {
		t.Fatalf("suspend: %v", err)
	}
	if su.Size < 2*PartSize || su.Size > int64(cut) || su.ID == "" {
		t.Fatalf("suspended %d bytes (id %q), want between %d and %d", su.Size, su.ID, 2*PartSize, cut)
	}
	if err := up.Commit(ctx); err == nil {
		t.Fatal("commit after suspend succeeded")
	}
	checkContent(t, s, "res/file", old)
	for _, e := range ListAll(t, s, vfs.ListOptions{Recursive: true, Prefix: "res/"}) {
		if !e.IsDir && e.Key != "res/file" {
			t.Fatalf("suspended upload listed: %v", e.Key)
		}
	}

	up2, err := rs.Resume(ctx, "res/file", su, vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := write(up2, data[su.Size:]); err != nil {
		t.Fatal(err)
	}
	checkContent(t, s, "res/file", old) // still the old version until commit
	if err := up2.Commit(ctx); err != nil {
		t.Fatalf("commit resumed upload: %v", err)
	}
	got, err := Get(t, s, "res/file")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("resumed object: %d bytes (err %v), want the %d uploaded", len(got), err, len(data))
	}

	// Suspend again, discard: resuming then reports it gone.
	up3, err := s.Create(ctx, "res/gone", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := write(up3, data[:PartSize+10]); err != nil {
		t.Fatal(err)
	}
	su3, err := up3.(vfs.Suspender).Suspend(ctx)
	if err != nil || su3.Size == 0 {
		t.Fatalf("suspend: %+v %v", su3, err)
	}
	if err := rs.DiscardSuspended(ctx, "res/gone", su3); err != nil {
		t.Fatalf("discard: %v", err)
	}
	if err := rs.DiscardSuspended(ctx, "res/gone", su3); err != nil {
		t.Fatalf("second discard: %v", err)
	}
	if _, err := rs.Resume(ctx, "res/gone", su3, vfs.CreateOptions{SizeHint: -1}); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("resume of a discarded upload: %v, want ErrNotExist", err)
	}
	mustNotExist(t, s, "res/gone")
}
