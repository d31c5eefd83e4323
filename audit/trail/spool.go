package trail

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
)

// Spool directory contents:
//
//	lock                          flock held while a Trail has the spool open
//	state.json                    chain state after the last sealed batch
//	seg-<gen>.jsonl               raw event lines not yet sealed
//	batch-<seq>-<gen>.jsonl       sealed batch objects not yet uploaded
//	quarantine-*                  batches that could not be shipped; never retried
//
// Sealing segment gen G into batch seq N writes batch-N-G (fsync, rename),
// then state.json {seq N, gen G} (fsync, rename, dir fsync), then removes
// seg-G. After a crash anywhere in between, load() sees which step was
// reached: the highest batch file wins over an older state, and segments
// whose gen is already sealed are removed instead of being sealed twice.
const (
	stateFile        = "state.json"
	segPrefix        = "seg-"
	batchPrefix      = "batch-"
	quarantinePrefix = "quarantine-"
	fileSuffix       = ".jsonl"
)

// chainState is what the next batch needs from the previous one.
type chainState struct {
	Instance string `json:"instance"`
	Seq      uint64 `json:"seq"`  // last sealed seq, 0 before the first
	Hash     string `json:"hash"` // hex SHA-256 of that batch object
	Time     string `json:"time"` // its sealing time
	Gen      uint64 `json:"gen"`  // spool segment sealed into it (local only)
}

type spool struct {
	dir   string
	lockf *os.File
	bytes atomic.Int64 // segments and batch files
}

func segName(gen uint64) string { return fmt.Sprintf("%s%012d%s", segPrefix, gen, fileSuffix) }

func batchName(seq, gen uint64) string {
	return fmt.Sprintf("%s%012d-%012d%s", batchPrefix, seq, gen, fileSuffix)
}

// parseName reads the numbers of a spool file name, "" if it is not one.
func parseName(name string) (kind string, a, b uint64) {
	var ok bool
	var rest string
	switch {
	case strings.HasPrefix(name, segPrefix):
		kind, rest = "seg", strings.TrimPrefix(name, segPrefix)
	case strings.HasPrefix(name, batchPrefix):
		kind, rest = "batch", strings.TrimPrefix(name, batchPrefix)
	default:
		return "", 0, 0
	}
	if rest, ok = strings.CutSuffix(rest, fileSuffix); !ok {
		return "", 0, 0
	}
	num := func(s string) (uint64, bool) {
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil && len(s) == 12
	}
	if kind == "seg" {
		if a, ok = num(rest); ok {
			return kind, a, 0
		}
		return "", 0, 0
	}
	sa, sb, found := strings.Cut(rest, "-")
	var ok2 bool
	a, ok = num(sa)
	b, ok2 = num(sb)
	if !found || !ok || !ok2 {
		return "", 0, 0
	}
	return kind, a, b
}

func openSpool(dir string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lockf, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	return &spool{dir: dir, lockf: lockf}, nil
}

func (s *spool) close() {
	if s.lockf != nil {
		s.lockf.Close() // releases the flock
		s.lockf = nil
	}
}

func (s *spool) path(name string) string { return filepath.Join(s.dir, name) }

type loaded struct {
	chain   chainState
	known   bool
	waiting []uint64 // unsealed segments, oldest first
	nextGen uint64
	batches int
}

// load reconciles the spool after a previous run (clean or not).
func (s *spool) load(instance string, log hclog.Logger) (loaded, error) {
	var l loaded
	data, err := os.ReadFile(s.path(stateFile))
	switch {
	case err == nil:
		if json.Unmarshal(data, &l.chain) != nil || len(l.chain.Hash) != len(zeroHash) {
			log.Error("audit spool: state file unreadable; chain state will be recovered from the store")
			l.chain = chainState{}
		} else {
			l.known = true
		}
	case !errors.Is(err, fs.ErrNotExist):
		return l, err
	}
	if l.known && l.chain.Instance != instance {
		return l, fmt.Errorf("spool %s belongs to audit instance %q, not %q", s.dir, l.chain.Instance, instance)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return l, err
	}
	type bfile struct {
		name     string
		seq, gen uint64
	}
	var batches []bfile
	var segs []uint64
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(s.path(name)) // a write that never got renamed into place
			continue
		}
		kind, a, b := parseName(name)
		switch kind {
		case "seg":
			segs = append(segs, a)
		case "batch":
			batches = append(batches, bfile{name, a, b})
		default:
			continue
		}
		if fi, err := e.Info(); err == nil {
			s.bytes.Add(fi.Size())
		}
	}
	sort.Slice(batches, func(i, j int) bool { return batches[i].seq < batches[j].seq })
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })

	lastGen := l.chain.Gen
	for _, bf := range batches {
		lastGen = max(lastGen, bf.gen)
		if l.known && bf.seq <= l.chain.Seq {
			continue
		}
		// Sealed, but the run stopped before state.json said so: the
		// batch file is the truth.
		data, err := os.ReadFile(s.path(bf.name))
		if err != nil {
			return l, err
		}
		b, err := parseBatch(data)
		if err != nil || b.h.Seq != bf.seq {
			return l, fmt.Errorf("spooled batch %s is corrupt; move it out of %s to continue", bf.name, s.dir)
		}
		if b.h.Instance != instance {
			return l, fmt.Errorf("spool %s holds batches of audit instance %q, not %q", s.dir, b.h.Instance, instance)
		}
		sum := sha256.Sum256(data)
		l.chain = chainState{Instance: instance, Seq: b.h.Seq, Hash: hex.EncodeToString(sum[:]), Time: b.h.Time, Gen: bf.gen}
		l.known = true
	}
	maxGen := lastGen
	for _, g := range segs {
		maxGen = max(maxGen, g)
		if g <= lastGen {
			// Already sealed; only its removal was lost.
			if fi, err := os.Stat(s.path(segName(g))); err == nil {
				s.bytes.Add(-fi.Size())
			}
			os.Remove(s.path(segName(g)))
			continue
		}
		l.waiting = append(l.waiting, g)
	}
	l.nextGen = maxGen + 1
	l.batches = len(batches)
	return l, nil
}

func (s *spool) openSegment(gen uint64) (*os.File, error) {
	f, err := os.OpenFile(s.path(segName(gen)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	return f, nil
}

// writeFile writes name durably: temp file, fsync, rename. The caller
// fsyncs the directory.
func (s *spool) writeFile(name string, data []byte) error {
	tmp := s.path(name + ".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func (s *spool) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// seal turns segment gen into the batch after prev. ok is false when the
// segment held no usable events (nothing sealed, seq not consumed). The
// seal is committed only once both the batch and the state are on disk.
func (s *spool) seal(gen uint64, prev chainState, o Options, lose func(int, error)) (chainState, bool, error) {
	segPath := s.path(segName(gen))
	data, err := os.ReadFile(segPath)
	if errors.Is(err, fs.ErrNotExist) {
		return prev, false, nil
	}
	if err != nil {
		return prev, false, err
	}
	var lines [][]byte
	var first, last time.Time
	for rest := data; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			lose(1, errors.New("torn event line at the end of a spool segment (crash while writing)"))
			break
		}
		line := rest[:i]
		rest = rest[i+1:]
		et, err := eventTime(line)
		if err != nil {
			lose(1, fmt.Errorf("corrupt event line in spool segment %d: %w", gen, err))
			continue
		}
		if first.IsZero() || et.Before(first) {
			first = et
		}
		if et.After(last) {
			last = et
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		os.Remove(segPath)
		s.bytes.Add(-int64(len(data)))
		return prev, false, nil
	}
	st, err := s.commit(gen, prev, lines, first, last, o)
	if err != nil {
		return prev, false, err
	}
	os.Remove(segPath)
	s.bytes.Add(-int64(len(data)))
	return st, true, nil
}

// heartbeat seals a batch without events after prev, as gen (which must
// have no segment), so that the trail shows the gateway alive.
func (s *spool) heartbeat(gen uint64, prev chainState, o Options) (chainState, error) {
	return s.commit(gen, prev, nil, time.Time{}, time.Time{}, o)
}

// commit writes the batch after prev holding lines and the new chain
// state; the seal counts only once both are on disk.
func (s *spool) commit(gen uint64, prev chainState, lines [][]byte, first, last time.Time, o Options) (chainState, error) {
	sealed := o.Now().UTC().Truncate(time.Millisecond)
	if pt, err := time.Parse(audit.TimeLayout, prev.Time); err == nil && sealed.Before(pt) {
		sealed = pt // keys must not go backwards even if the clock does
	}
	prevHash := prev.Hash
	if prev.Seq == 0 {
		prevHash = zeroHash
	}
	h := header{Instance: o.Instance, Seq: prev.Seq + 1, Prev: prevHash, Time: audit.FormatTime(sealed)}
	if len(lines) > 0 {
		h.First, h.Last = audit.FormatTime(first), audit.FormatTime(last)
	}
	obj := encodeBatch(h, lines, o.Key)
	bname := batchName(h.Seq, gen)
	if err := s.writeFile(bname, obj); err != nil {
		return prev, err
	}
	sum := sha256.Sum256(obj)
	st := chainState{Instance: o.Instance, Seq: h.Seq, Hash: hex.EncodeToString(sum[:]), Time: h.Time, Gen: gen}
	sb, _ := json.Marshal(st)
	err := s.writeFile(stateFile, sb)
	if err == nil {
		err = s.syncDir()
	}
	if err != nil {
		// Not committed: the next attempt re-seals the same segment into
		// the same seq and file name.
		os.Remove(s.path(bname))
		return prev, err
	}
	s.bytes.Add(int64(len(obj)))
	return st, nil
}

// batchFiles lists sealed batches in seq order.
func (s *spool) batchFiles() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if kind, _, _ := parseName(e.Name()); kind == "batch" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // fixed-width seq first: name order is seq order
	return names, nil
}

func (s *spool) read(name string) ([]byte, error) { return os.ReadFile(s.path(name)) }

func (s *spool) remove(name string) error {
	fi, err := os.Stat(s.path(name))
	if err != nil {
		return err
	}
	if err := os.Remove(s.path(name)); err != nil {
		return err
	}
	s.bytes.Add(-fi.Size())
	return nil
}

// quarantine keeps a batch that must not be retried for an operator to look
// at; it no longer counts against the spool bound.
func (s *spool) quarantine(name string) error {
	fi, err := os.Stat(s.path(name))
	if err != nil {
		return err
	}
	if err := os.Rename(s.path(name), s.path(quarantinePrefix+name)); err != nil {
		return err
	}
	s.bytes.Add(-fi.Size())
	return nil
}
