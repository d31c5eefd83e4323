package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pkg/sftp"

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
func serveSFTP(ctx context.Context, ch io.ReadWriteCloser, fs *vfs.FS, opt SFTPOptions, act *connActivity, log hclog.Logger) error {
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
	rwc := newLimitsFilter(newLongNames(newOpenFlagsFilter(ch), time.Now, time.Local), maxData, func(name string) { _ = fs.Deny("extension:"+name, "/") },
		func(what string) { _ = fs.Deny(what, "/") })
	h := &handlers{fs: fs, ctx: ctx, act: act, notes: newLimitNotes(ch), log: log}
	srv := sftp.NewRequestServer(rwc, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
		sftp.WithRSAllocator(), sftp.WithRSMaxTxPacket(opt.MaxPacket))
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	err := srv.Serve()
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
	log   hclog.Logger
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
		return sftp.ErrSSHFxOpUnsupported
	case err == io.EOF:
		// Only our own end of file: a store error wrapping io.EOF (a
		// dropped connection) must not tell the client the file ended.
		return io.EOF
	}
	return errors.New(vfs.SafeMessage(err))
}

func (h *handlers) Fileread(r *sftp.Request) (_ io.ReaderAt, err error) {
	defer h.recovered(&err)
	if err := h.act.open("download", r.Filepath); err != nil {
		return nil, err
	}
	rd, err := h.fs.OpenRead(h.ctx, r.Filepath)
	if err != nil {
		h.act.closed()
		return nil, toStatus(err)
	}
	return &readerAt{r: rd, oc: &onceCloser{a: h.act}}, nil
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
	defer h.recovered(&err)
	if err := h.act.open("upload", r.Filepath); err != nil {
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
	return &writerAt{w: w, oc: &onceCloser{a: h.act}, notes: h.notes}, nil
}

func (h *handlers) Filecmd(r *sftp.Request) (err error) {
	defer h.recovered(&err)
	switch r.Method {
	case "Setstat":
		if r.AttrFlags().Size {
			// Attributes is nil when the attribute block is truncated: a
			// malformed request, which must not crash the gateway.
			st := r.Attributes()
			if st == nil {
				return sftp.ErrSSHFxBadMessage
			}
			err = h.fs.Truncate(h.ctx, r.Filepath, int64(st.Size))
		} else {
			err = h.fs.Setstat(h.ctx, r.Filepath)
		}
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

// errInternal answers a request whose handler panicked.
var errInternal = errors.New("internal error; the request was not carried out")

// recovered turns a panic in a request handler into the failure of that one
// request: pkg/sftp does not recover panics, so without this one bad request
// would end every session of the gateway.
func (h *handlers) recovered(err *error) {
	if p := recover(); p != nil {
		h.log.Error("sftp handler panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		*err = errInternal
	}
}

// PosixRename replaces the target atomically from the client's view.
func (h *handlers) PosixRename(r *sftp.Request) (err error) {
	defer h.recovered(&err)
	err = h.fs.Rename(h.ctx, r.Filepath, r.Target, true)
	h.notes.tell(err)
	return toStatus(err)
}

// StatVFS reports a large, mostly free file system: S3 has no fixed size,
// and clients (sshfs df, FileZilla) only need plausible numbers.
func (h *handlers) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	if _, err := h.fs.RealPath(r.Filepath); err != nil {
		return nil, toStatus(err)
	}
	const bsize = 1 << 20
	const blocks = 1 << 30 // 1 PiB in 1 MiB blocks
	return &sftp.StatVFS{Bsize: bsize, Frsize: bsize, Blocks: blocks, Bfree: blocks, Bavail: blocks,
		Files: 1 << 32, Ffree: 1 << 32, Favail: 1 << 32, Namemax: 255}, nil
}

func (h *handlers) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer h.recovered(&err)
	switch r.Method {
	case "List":
		l, err := h.fs.List(h.ctx, r.Filepath)
		if err != nil {
			return nil, toStatus(err)
		}
		return &listerAt{l: l}, nil
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
func (h *handlers) RealPath(p string) (string, error) {
	vp, err := h.fs.RealPath(p)
	return vp, toStatus(err)
}

// readerAt and writerAt translate errors on the hot path.
type readerAt struct {
	r  *vfs.Reader
	oc *onceCloser
}

func (a *readerAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := a.r.ReadAt(p, off)
	return n, toStatus(err)
}
func (a *readerAt) Close() error {
	defer a.oc.done()
	return toStatus(a.r.Close())
}
func (a *readerAt) TransferError(err error) { a.r.TransferError(err) }
func (a *writerAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := a.w.ReadAt(p, off)
	return n, toStatus(err)
}

type writerAt struct {
	w     *vfs.Writer
	oc    *onceCloser
	notes *limitNotes
}

func (a *writerAt) WriteAt(p []byte, off int64) (int, error) {
	n, err := a.w.WriteAt(p, off)
	return n, toStatus(err)
}
func (a *writerAt) Close() error {
	defer a.oc.done()
	err := a.w.Close()
	a.notes.tell(err) // once per upload: a refused write repeats its error until the close
	return toStatus(err)
}
func (a *writerAt) TransferError(err error) { a.w.TransferError(err) }

// listerAt feeds pkg/sftp's offset-based listing from the sequential lister.
type listerAt struct {
	l    *vfs.Lister
	sent int64
}

func (a *listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
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

func (a *listerAt) Close() error { return a.l.Close() }

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
