package vfs_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
)

// captureStore keeps what its one upload received.
type captureStore struct {
	memStore
	up *captureUpload
}

type captureUpload struct {
	bytes.Buffer
	committed bool
}

func (u *captureUpload) Commit(context.Context) error { u.committed = true; return nil }
func (u *captureUpload) Abort(context.Context) error  { return nil }
func (u *captureUpload) SetMTime(time.Time) bool      { return true }

func (s *captureStore) Create(context.Context, string, vfs.CreateOptions) (vfs.Upload, error) {
	s.up = &captureUpload{}
	return s.up, nil
}

// TestWriterReorderKeepsBytes writes chunks of varying sizes in shuffled
// groups, reusing the caller's buffer after every call as pkg/sftp does,
// and checks the upload got exactly the file, in order. It guards the
// reuse of pending copies: a copy recycled too early would corrupt data.
func TestWriterReorderKeepsBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	want := make([]byte, 12<<20)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	// Chunk boundaries: mostly 255 KiB, some 32 KiB and odd sizes.
	var offs []int
	for off := 0; off < len(want); {
		offs = append(offs, off)
		switch rng.IntN(4) {
		case 0:
			off += 32 << 10
		case 1:
			off += 1 + rng.IntN(300<<10)
		default:
			off += 255 << 10
		}
	}
	offs = append(offs, len(want))
	st := &captureStore{}
	w, err := benchFS(st).OpenWrite(context.Background(), "/f", false)
	if err != nil {
		t.Fatal(err)
	}
	scratch := make([]byte, 400<<10) // reused for every call, like pkg/sftp's packet buffers
	n := len(offs) - 1
	for g := 0; g < n; g += 12 {
		idx := make([]int, 0, 12)
		for i := g; i < min(g+12, n); i++ {
			idx = append(idx, i)
		}
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		for _, i := range idx {
			c := scratch[:offs[i+1]-offs[i]]
			copy(c, want[offs[i]:offs[i+1]])
			if _, err := w.WriteAt(c, int64(offs[i])); err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
			for j := range c {
				c[j] = 0xAA // the caller reuses its buffer at once
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !st.up.committed {
		t.Fatal("upload not committed")
	}
	if got := st.up.Bytes(); !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("upload differs from the file at byte %d (got %d bytes, want %d)", i, len(got), len(want))
	}
}
