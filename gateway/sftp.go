package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pkg/sftp"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// SFTPOptions tunes the SFTP layer.
type SFTPOptions struct {
	// MaxPacket is the largest read reply and write request, announced to
	// OpenSSH clients through limits@openssh.com. 0: 255 KiB.
	MaxPacket uint32
	// DisableLimitsExtension keeps stock 32 KiB requests (for comparison).
	DisableLimitsExtension bool
}

// serveSFTP runs pkg/sftp's request server for one channel until the client
// closes it or ctx ends.
func serveSFTP(ctx context.Context, ch io.ReadWriteCloser, fs *vfs.FS, opt SFTPOptions, act *connActivity, log hclog.Logger) (err error) {
	if opt.MaxPacket == 0 {
		opt.MaxPacket = 255 * 1024
	}
	maxData := opt.MaxPacket
	if opt.DisableLimitsExtension {
		maxData = 0 // the filter still enforces INIT first and the in-flight bound
	}
	// Long names are rewritten below the limits filter, which counts
	// pkg/sftp's packet lengths before the rewrite changes them; open
	// flags (inbound only) are fixed below both.
	filters := newLimitsFilter(newLongNames(newOpenFlagsFilter(ch), time.Now, time.Local), maxData, func(name string) { _ = fs.Deny("extension:"+name, "/") },
		func(what string) { _ = fs.Deny(what, "/") })
	g := newGuard(log, act, fs)
	rwc := &guardedStream{ReadWriteCloser: filters, g: g}
	// pkg/sftp parses packets in this goroutine: a panic there ends this
	// channel only.
	defer g.recovered("sftp_stream", "/", &err, func() { _ = rwc.Close() })
	h := &handlers{fs: fs, ctx: ctx, act: act, notes: newLimitNotes(ch), guard: g}
	srv := sftp.NewRequestServer(rwc, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
		sftp.WithRSAllocator(), sftp.WithRSMaxTxPacket(opt.MaxPacket))
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	err = srv.Serve()
	_ = srv.Close()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil && ctx.Err() == nil {
		log.Debug("sftp session ended", "error", err.Error())
	}
	return err
}

// handlers adapts pkg/sftp requests to the session's vfs.FS. It holds no
// policy: every decision is the FS's.
type handlers struct {
	fs    *vfs.FS
	ctx   context.Context
	act   *connActivity // open handles, for a graceful shutdown
	notes *limitNotes   // limit refusals, repeated on stderr
	*guard
}

// toStatus maps FS errors to the values pkg/sftp turns into SFTP status
// codes. Unwrapped sentinels matter: pkg/sftp compares some without
// errors.Is. Store errors become a fixed, safe text.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, vfs.ErrPermission):
		return sftp.ErrSSHFxPermissionDenied
	case errors.Is(err, vfs.ErrNotExist):
		return os.ErrNotExist
	case errors.Is(err, vfs.ErrUnsupported):
		var re *vfs.RefusedError
		if errors.As(err, &re) {
			// The same code, with the reason as the status message.
			return &statusReason{reason: re.Reason, code: sftp.ErrSSHFxOpUnsupported}
		}
		return sftp.ErrSSHFxOpUnsupported
	case err == sftp.ErrSSHFxBadMessage:
		return err // a malformed request: not the store's fault
	case err == io.EOF:
		// Only our own end of file: a store error wrapping io.EOF (a
		// dropped connection) must not tell the client the file ended.
		return io.EOF
	}
	return errors.New(vfs.SafeMessage(err))
}

// statusReason is a status code with a message of ours: pkg/sftp takes
// the code from the wrapped value and the message from Error.
type statusReason struct {
	reason string
	code   error
}

func (e *statusReason) Error() string { return e.reason }
func (e *statusReason) Unwrap() error { return e.code }

func (h *handlers) Fileread(r *sftp.Request) (_ io.ReaderAt, err error) {
	defer h.recovered("download", r.Filepath, &err, nil)
	if err := h.act.open("download", r.Filepath); err != nil {
		h.notes.tell(err)
		return nil, err
	}
	rd, err := h.fs.OpenRead(h.ctx, r.Filepath)
	if err != nil {
		h.act.closed()
		return nil, toStatus(err)
	}
	return &readerAt{r: rd, oc: &onceCloser{a: h.act}, g: h.guard, path: r.Filepath}, nil
}

func (h *handlers) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return h.openWrite(r)
}

// OpenFile handles opens for read and write together (sshfs does this).
// Such a handle writes like any upload; reading back through it is refused.
func (h *handlers) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	return h.openWrite(r)
}

func (h *handlers) openWrite(r *sftp.Request) (_ *writerAt, err error) {
	defer h.recovered("upload", r.Filepath, &err, nil)
	if err := h.act.open("upload", r.Filepath); err != nil {
		h.notes.tell(err)
		return nil, err
	}
	fl := r.Pflags()
	// Without O_TRUNC an existing file would be edited in place; vfs refuses that.
	w, err := h.fs.OpenWriteFlags(h.ctx, r.Filepath, vfs.WriteFlags{Exclusive: fl.Excl, Truncate: fl.Trunc})
	if err != nil {
		h.act.closed()
		h.notes.tell(err)
		return nil, toStatus(err)
	}
	return &writerAt{w: w, oc: &onceCloser{a: h.act}, notes: h.notes, g: h.guard, path: r.Filepath}, nil
}

func (h *handlers) Filecmd(r *sftp.Request) (err error) {
	defer h.recovered(methodOp(r.Method), r.Filepath, &err, nil)
	switch r.Method {
	case "Setstat":
		err = h.setstat(r)
	case "Rename":
		err = h.fs.Rename(h.ctx, r.Filepath, r.Target, false)
	case "Rmdir":
		err = h.fs.Rmdir(h.ctx, r.Filepath)
	case "Mkdir":
		err = h.fs.Mkdir(h.ctx, r.Filepath)
	case "Remove":
		err = h.fs.Remove(h.ctx, r.Filepath)
	case "Link":
		err = h.fs.Deny("link", r.Filepath)
	case "Symlink":
		err = h.fs.Deny("symlink", r.Filepath)
	default:
		err = h.fs.Deny(r.Method, r.Filepath)
	}
	h.notes.tell(err)
	return toStatus(err)
}

// setstat acts on a setstat's size (only "no change" is possible) and
// modification time; the FS ignores modes and owners.
func (h *handlers) setstat(r *sftp.Request) error {
	fl := r.AttrFlags()
	if !fl.Size && !fl.Acmodtime {
		return h.fs.Setstat(h.ctx, r.Filepath, time.Time{})
	}
	// Attributes is nil when the attribute block is truncated: a
	// malformed request, which must not crash the gateway.
	st := r.Attributes()
	if st == nil {
		return sftp.ErrSSHFxBadMessage
	}
	if fl.Size {
		if err := h.fs.Truncate(h.ctx, r.Filepath, int64(st.Size)); err != nil || !fl.Acmodtime {
			return err
		}
	}
	return h.fs.Setstat(h.ctx, r.Filepath, time.Unix(int64(st.Mtime), 0))
}

// errInternal answers a request whose handler panicked.
var errInternal = errors.New("internal error; the request was not carried out")

// guard turns a panic in a request handler into the failure of that one
// request, logged with its stack and audited: pkg/sftp runs handlers (and
// ReadAt, WriteAt, ListAt, Close on their handles) in its own worker
// goroutines and recovers nothing, so one panic would end every session
// of the gateway.
type guard struct {
	log  hclog.Logger
	rec  audit.Recorder // nil: log only
	sess vfs.Session
}

func newGuard(log hclog.Logger, act *connActivity, fs *vfs.FS) *guard {
	g := &guard{log: log}
	if act != nil {
		g.rec, g.sess = act.rec, act.sess
	} else if fs != nil {
		g.sess = fs.Session()
	}
	return g
}

// recovered is deferred by every entry point pkg/sftp calls. On a panic it
// sets *err (if err is not nil) and runs then, which fails the transfer so
// nothing partial is committed.
func (g *guard) recovered(op, p string, err *error, then func()) {
	r := recover()
	if r == nil {
		return
	}
	g.log.Error("sftp handler panic", "op", op, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	if err != nil {
		*err = errInternal
	}
	if then != nil {
		func() {
			defer func() { _ = recover() }() // the handle is broken already; the panic is logged
			then()
		}()
	}
	if g.rec != nil {
		vp, cerr := vfs.CleanPath(p)
		if cerr != nil {
			vp = p
		}
		g.rec.Record(audit.Event{Time: time.Now().UTC(), Kind: "file", Session: g.sess.ID, User: g.sess.User,
			Role: g.sess.Role, Client: g.sess.Client, Op: op, Path: vp, Result: "error", ErrClass: "internal",
			Detail: "internal error (panic); the request was not carried out"})
	}
}

// guardedStream recovers a panic in the packet filters under pkg/sftp
// (they parse what the client sends; pkg/sftp calls Write from its own
// goroutine, where nothing else could recover it): the channel ends with an
// error, audited, instead of the process.
type guardedStream struct {
	io.ReadWriteCloser
	g *guard
}

func (s *guardedStream) Read(p []byte) (n int, err error) {
	defer s.g.recovered("sftp_stream", "/", &err, func() { _ = s.ReadWriteCloser.Close() })
	return s.ReadWriteCloser.Read(p)
}

func (s *guardedStream) Write(p []byte) (n int, err error) {
	defer s.g.recovered("sftp_stream", "/", &err, func() { _ = s.ReadWriteCloser.Close() })
	return s.ReadWriteCloser.Write(p)
}

// methodOp names a pkg/sftp method as the audit trail names operations.
func methodOp(m string) string {
	switch m {
	case "Remove":
		return "delete"
	case "PosixRename":
		return "rename"
	case "List":
		return "list"
	case "Stat", "Lstat", "Fstat":
		return "stat"
	}
	return strings.ToLower(m)
}

// PosixRename replaces the target atomically from the client's view.
func (h *handlers) PosixRename(r *sftp.Request) (err error) {
	defer h.recovered("rename", r.Filepath, &err, nil)
	err = h.fs.Rename(h.ctx, r.Filepath, r.Target, true)
	h.notes.tell(err)
	return toStatus(err)
}

// StatVFS reports a large, mostly free file system: S3 has no fixed size,
// and clients (sshfs df, FileZilla) only need plausible numbers.
func (h *handlers) StatVFS(r *sftp.Request) (_ *sftp.StatVFS, err error) {
	defer h.recovered("statvfs", r.Filepath, &err, nil)
	if _, err := h.fs.RealPath(r.Filepath); err != nil {
		return nil, toStatus(err)
	}
	const bsize = 1 << 20
	const blocks = 1 << 30 // 1 PiB in 1 MiB blocks
	return &sftp.StatVFS{Bsize: bsize, Frsize: bsize, Blocks: blocks, Bfree: blocks, Bavail: blocks,
		Files: 1 << 32, Ffree: 1 << 32, Favail: 1 << 32, Namemax: 255}, nil
}

func (h *handlers) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer h.recovered(methodOp(r.Method), r.Filepath, &err, nil)
	switch r.Method {
	case "List":
		// An open directory is a handle too: counted against the limit.
		if err := h.act.openDir(r.Filepath); err != nil {
			h.notes.tell(err)
			return nil, toStatus(err)
		}
		l, err := h.fs.List(h.ctx, r.Filepath)
		if err != nil {
			h.act.dirClosed()
			return nil, toStatus(err)
		}
		return &listerAt{l: l, g: h.guard, path: r.Filepath, act: h.act}, nil
	case "Stat", "Lstat":
		fi, err := h.fs.Stat(h.ctx, r.Filepath)
		if err != nil {
			return nil, toStatus(err)
		}
		return statList{fileInfo{fi}}, nil
	case "Readlink":
		return nil, toStatus(h.fs.Deny("readlink", r.Filepath))
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat is Stat: there are no links.
func (h *handlers) Lstat(r *sftp.Request) (sftp.ListerAt, error) { return h.Filelist(r) }

// RealPath canonicalises without touching the store.
func (h *handlers) RealPath(p string) (_ string, err error) {
	defer h.recovered("realpath", p, &err, nil)
	vp, err := h.fs.RealPath(p)
	return vp, toStatus(err)
}

// readerAt and writerAt translate errors on the hot path. pkg/sftp calls
// them from its worker goroutines: each method recovers its own panics.
type readerAt struct {
	r    *vfs.Reader
	oc   *onceCloser
	g    *guard
	path string
}

func (a *readerAt) ReadAt(p []byte, off int64) (n int, err error) {
	defer a.g.recovered("download", a.path, &err, a.abort)
	n, err = a.r.ReadAt(p, off)
	return n, toStatus(err)
}
func (a *readerAt) Close() (err error) {
	defer a.oc.done()
	defer a.g.recovered("download", a.path, &err, nil)
	return toStatus(a.r.Close())
}
func (a *readerAt) TransferError(err error) {
	defer a.g.recovered("download", a.path, nil, nil)
	a.r.TransferError(err)
}

// abort marks a download failed after a panic: it is audited as an error
// and never counts as complete (no delete after download).
func (a *readerAt) abort() { a.r.TransferError(errInternal) }

func (a *writerAt) ReadAt(p []byte, off int64) (n int, err error) {
	defer a.g.recovered("read_from_upload_handle", a.path, &err, nil)
	n, err = a.w.ReadAt(p, off)
	return n, toStatus(err)
}

type writerAt struct {
	w     *vfs.Writer
	oc    *onceCloser
	notes *limitNotes
	g     *guard
	path  string
}

func (a *writerAt) WriteAt(p []byte, off int64) (n int, err error) {
	defer a.g.recovered("upload", a.path, &err, a.abort)
	n, err = a.w.WriteAt(p, off)
	return n, toStatus(err)
}
func (a *writerAt) Close() (err error) {
	defer a.oc.done()
	defer a.g.recovered("upload", a.path, &err, a.abort)
	err = a.w.Close()
	a.notes.tell(err) // once per upload: a refused write repeats its error until the close
	return toStatus(err)
}
func (a *writerAt) TransferError(err error) {
	defer a.g.recovered("upload", a.path, nil, nil)
	a.w.TransferError(err)
}

// abort fails the upload after a panic: nothing of it is ever committed.
func (a *writerAt) abort() { a.w.TransferError(errInternal) }

// listerAt feeds pkg/sftp's offset-based listing from the sequential lister.
type listerAt struct {
	l    *vfs.Lister
	sent int64
	g    *guard
	path string
	act  *connActivity
	once sync.Once
}

func (a *listerAt) ListAt(out []os.FileInfo, off int64) (n int, err error) {
	defer a.g.recovered("list", a.path, &err, nil)
	if off != a.sent {
		return 0, errors.New("directory listing must be read in order")
	}
	items, err := a.l.Next(len(out))
	for i, fi := range items {
		out[i] = fileInfo{fi}
	}
	a.sent += int64(len(items))
	if err != nil && err != io.EOF { // a wrapped EOF is a store error, not the end
		return len(items), toStatus(err)
	}
	return len(items), err
}

func (a *listerAt) Close() (err error) {
	defer a.g.recovered("list", a.path, &err, nil)
	a.once.Do(a.act.dirClosed)
	return a.l.Close()
}

type statList []os.FileInfo

func (s statList) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(s)) {
		return 0, io.EOF
	}
	n := copy(out, s[off:])
	if n+int(off) >= len(s) {
		return n, io.EOF
	}
	return n, nil
}

// fileInfo presents a vfs.FileInfo as os.FileInfo. Modes are nominal:
// objects have no owner or mode; what a role may do is decided elsewhere.
type fileInfo struct{ fi vfs.FileInfo }

func (f fileInfo) Name() string { return f.fi.Name }
func (f fileInfo) Size() int64  { return f.fi.Size }
func (f fileInfo) Mode() os.FileMode {
	if f.fi.IsDir {
		return os.ModeDir | 0o750
	}
	return 0o640
}
func (f fileInfo) ModTime() time.Time { return f.fi.ModTime }
func (f fileInfo) IsDir() bool        { return f.fi.IsDir }
func (f fileInfo) Sys() any           { return nil }
