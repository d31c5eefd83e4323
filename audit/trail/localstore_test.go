package trail

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// TestLocalStoreEndToEnd runs a trail against the real local-directory
// store, then tampers with a file on disk.
func TestLocalStoreEndToEnd(t *testing.T) {
	root := t.TempDir()
	st, err := localstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := newClock()
	o := testOptions(st, t.TempDir(), c)
	o.BatchMaxEvents = 4
	tr := newTrail(t, o)
	run(t, tr)
	for i := range 20 {
		tr.Record(ev(i))
	}
	closeTrail(t, tr)

	// A new machine (empty spool) continues the chain read from disk.
	tr2 := newTrail(t, testOptions(st, t.TempDir(), c))
	tr2.Record(ev(20))
	closeTrail(t, tr2)

	pub := testKey.Public().(ed25519.PublicKey)
	r, err := Verify(context.Background(), st, "audit/", pub, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || len(r.Instances) != 1 || r.Instances[0].Batches != 6 || r.Instances[0].Events != 21 {
		t.Fatalf("good trail:\n%s", r)
	}

	var files []string
	filepath.WalkDir(filepath.Join(root, "audit"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if len(files) != 6 {
		t.Fatalf("files %v", files)
	}
	victim := files[2]
	data, _ := os.ReadFile(victim)
	os.WriteFile(victim, bytes.Replace(data, []byte("/f/9"), []byte("/f/X"), 1), 0o600)
	r, err = Verify(context.Background(), st, "audit/", pub, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := filepath.Rel(root, victim)
	wantProblem(t, r, KindAltered, filepath.ToSlash(key))
}
