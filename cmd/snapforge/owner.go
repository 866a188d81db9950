// One owner, many clients (DESIGN.md, "Process model").
//
// While a long-running snapforge (`mount`, later `serve`) owns a repository
// it holds the owner lock, so no other process can open the repository.
// It serves the repository's commands instead, on the unix socket
// <repo>/run/owner.sock (mode 0600 in the 0700 directory run/). A CLI
// command that finds the socket hands its command line to the owner, which
// runs the very same command function there with the client's standard
// output and error streamed back: output, progress and exit codes are those
// of running the command locally.
//
// # Protocol
//
// One connection carries one command. Everything is a frame: one kind byte,
// a big-endian uint32 payload length, the payload (at most 1 MiB).
//
//	client → owner  'Q' request: JSON ownerRequest, first and once:
//	                    {"version":2, "args":["bHM=","bGF0ZXN0","ZXRj"],
//	                     "cwd":"L2hvbWUvbWU=", "json":false, "tty":true, "pid":4242}
//	                    args are the command line without the global flags
//	                    (here ls latest etc), and cwd resolves relative path
//	                    arguments, both as bytes in base64: a path need not
//	                    be UTF-8, which a JSON string cannot carry; json is --json;
//	                    tty says the client's stderr is a terminal (progress
//	                    is drawn then); pid is for messages.
//	client → owner  'C' cancel (empty): the user pressed Ctrl-C or sent
//	                    SIGTERM; the owner cancels the command's context.
//	owner → client  'O' bytes for the client's standard output.
//	owner → client  'E' bytes for the client's standard error.
//	owner → client  'X' exit: JSON {"code":N}, last; the client exits with N.
//
// The owner runs c.run(ctx, a, args) with a per-request app whose stdout and
// stderr are 'O' and 'E' frames and whose open lends the owner's repository
// (Repo.Share: the command's Close releases only its share), then sends the
// code app.exitCode computed, having printed the error as locally. A
// connection that drops before 'X' cancels the command; after a cancel the
// client keeps reading, so it prints what the owner reports ("interrupted;
// …") and exits with its code. Commands that write the repository (backup,
// verify, audit acknowledge) run one at a time, a waiting one saying so on
// 'E'; read-only ones run alongside them and each other. When the owner
// stops (Close, or its context ends) it removes the socket, cancels what
// runs, and tells those clients it is stopping. The owner answers only
// clients of its own uid, and root (SO_PEERCRED); others, an unknown
// protocol version or a command it does not serve get a message on 'E' and
// exit code 1.
//
// A client connects when its command is one the owner serves (ownerServes)
// and a repository is named. No socket (ENOENT) or nobody listening
// (ECONNREFUSED: the owner was killed; the kernel has dropped its lock,
// FAULTS G6): the command runs locally as without an owner. Any other error
// is reported. A second Ctrl-C makes the client stop waiting for the owner.
// Unix socket paths are limited to 108 bytes; longer ones are reached through
// /proc/self/fd/<the run directory opened O_PATH>/owner.sock.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/snapshot"
)

// clientActor names a client in the audit trail as a local command names
// itself ("cli:USER@HOST pid N"), and the owner it went through.
func clientActor(uid uint32, pid int) string {
	name := fmt.Sprintf("uid %d", uid)
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("%s pid %d (through pid %d)", cliActor(name), pid, os.Getpid())
}

// termWait is how long a client that got SIGTERM waits for the owner to
// report the cancelled command before it stops waiting.
const termWait = 5 * time.Second

// ownerProtocol is the version of the protocol above; bump it on any
// incompatible change. 2: args and cwd as bytes (1 sent JSON strings, in
// which a name that is not UTF-8 lost its bytes).
const ownerProtocol = 2

// Frame kinds.
const (
	frameRequest = 'Q'
	frameCancel  = 'C'
	frameStdout  = 'O'
	frameStderr  = 'E'
	frameExit    = 'X'
)

// maxFrame bounds a frame's payload; longer writes are split. The request
// may be longer, up to maxRequest: a command line of thousands of paths
// (`restore --include` …) must run through the owner as it runs alone.
const (
	maxFrame   = 1 << 20
	maxRequest = 64 << 20
)

// ownerServes lists the commands a client runs through the owner. init,
// repair, demo, mount, serve and help never go there: they open (or create)
// the repository themselves and, while an owner runs, fail with its name.
var ownerServes = map[string]bool{
	"backup": true, "snapshots": true, "ls": true, "cat": true, "manifest": true,
	"diff": true, "verify": true, "restore": true, "audit": true,
}

// writesRepository reports the commands that run one at a time in the owner.
func writesRepository(c *command, args []string) bool {
	switch c.name {
	case "backup", "verify": // verify writes verify records
		return true
	case "audit":
		return slices.Contains(args, "acknowledge")
	}
	return false
}

// ownerRequest is the 'Q' frame.
type ownerRequest struct {
	Version int      `json:"version"`
	Args    [][]byte `json:"args"`
	Cwd     []byte   `json:"cwd"`
	JSON    bool     `json:"json"`
	TTY     bool     `json:"tty"`
	PID     int      `json:"pid"`
	// TZ is the client's TZ variable, nil when unset (its time zone is
	// then the system's): times are printed in the client's zone.
	TZ *string `json:"tz,omitempty"`
}

// ownerExit is the 'X' frame.
type ownerExit struct {
	Code int `json:"code"`
}

func ownerSocket(repo string) string { return filepath.Join(repo, "run", "owner.sock") }

// ---- framing ----

func writeFrame(w io.Writer, kind byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	bufs := net.Buffers{hdr[:], p} // one writev on a socket
	_, err := bufs.WriteTo(w)
	return err
}

// readFrame reads one frame into buf (grown as needed) and returns its kind
// and payload, which is valid until the next call.
func readFrame(r io.Reader, buf *[]byte) (byte, []byte, error) {
	return readFrameMax(r, buf, maxFrame)
}

// discardFrame reads one frame of up to maxRequest bytes and keeps none of it.
func discardFrame(r io.Reader) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err == nil {
		io.CopyN(io.Discard, r, int64(min(binary.BigEndian.Uint32(hdr[1:]), maxRequest)))
	}
}

// errFrameTooLarge is a frame longer than its kind may be.
var errFrameTooLarge = errors.New("frame larger than the protocol allows")

// readFrameMax is readFrame for a payload of at most limit bytes.
func readFrameMax(r io.Reader, buf *[]byte, limit uint32) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > limit {
		return 0, nil, fmt.Errorf("%w: %d bytes, at most %d", errFrameTooLarge, n, limit)
	}
	if n > maxFrame { // a long request: memory as its bytes arrive, not as announced
		var bb bytes.Buffer
		if _, err := io.CopyN(&bb, r, int64(n)); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
		*buf = bb.Bytes()
		return hdr[0], *buf, nil
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	p := (*buf)[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// frameConn serializes the owner's frames to one client: stdout, stderr
// (progress comes from another goroutine) and the exit code.
type frameConn struct {
	mu  sync.Mutex
	c   net.Conn
	err error // the first write error; later sends fail with it
}

func (fc *frameConn) send(kind byte, p []byte) error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for fc.err == nil {
		n := min(len(p), maxFrame)
		fc.err = writeFrame(fc.c, kind, p[:n])
		if p = p[n:]; len(p) == 0 {
			break
		}
	}
	return fc.err
}

// frameWriter is one of the client's output streams.
type frameWriter struct {
	fc   *frameConn
	kind byte
}

func (w frameWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := w.fc.send(w.kind, p); err != nil {
		return 0, fmt.Errorf("write to the client: %w", err)
	}
	return len(p), nil
}

// ---- sockets ----

// socketAddr returns the address to bind or connect for the owner's socket
// in dir, and the O_PATH descriptor of dir to close afterwards (-1: none)
// when the path is too long for a socket address.
func socketAddr(dir string) (addr string, fd int, err error) { return socketAddrOf(dir, "owner.sock") }

// socketAddrOf is socketAddr for the socket named name in dir.
func socketAddrOf(dir, name string) (addr string, fd int, err error) {
	p := filepath.Join(dir, name)
	if len(p) < len(unix.RawSockaddrUnix{}.Path) {
		return p, -1, nil
	}
	fd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, name), fd, nil
}

// dialOwner connects to the owner of repo.
func dialOwner(repo string) (*net.UnixConn, error) {
	addr, fd, err := socketAddr(filepath.Join(repo, "run"))
	if err != nil {
		return nil, err
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
}

// ownerAbsent reports dial errors that mean nobody owns the repository: no
// socket, or a socket left by a killed owner.
func ownerAbsent(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTDIR)
}

// ---- server ----

// ownerServer serves the repository's commands to clients; see the top of
// this file. Create it with startOwner, stop it with Close.
type ownerServer struct {
	repo *snapshot.Repo
	ln   *net.UnixListener
	sock string // the socket's real path
	log  func(msg string, args ...any)
	mem  *memLimit // the process's memory limit, lifted while commands run; nil: see idleMem

	ctx    context.Context // parent of every command's context; ends at Close
	cancel context.CancelFunc
	stop   func() bool // stops the context.AfterFunc that stops listening
	wg     sync.WaitGroup
	writer chan struct{} // full while a command that writes the repository runs

	mu      sync.Mutex // guards the fields below
	conns   map[net.Conn]bool
	closing bool
	writing string // the command holding writer, for messages
	running int    // commands running
	idleMem int64  // the process's memory limit while no command runs

	unlisten, closed sync.Once
}

// startOwner serves r, which the caller has opened with a.open and so owns,
// on <repo>/run/owner.sock until Close, or until ctx ends (then it stops
// taking new clients and cancels the running commands). The caller calls
// Close, then closes r. Commands served use r concurrently with the caller.
func startOwner(ctx context.Context, a *app, r *snapshot.Repo) (*ownerServer, error) {
	run := filepath.Join(r.Path(), "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		return nil, fmt.Errorf("serve the repository: %w", err)
	}
	if err := os.Chmod(run, 0o700); err != nil {
		return nil, fmt.Errorf("serve the repository: %w", err)
	}
	sock := ownerSocket(r.Path())
	if _, err := os.Lstat(sock); err == nil {
		// Left by an owner that was killed: we hold the owner lock, so no
		// live owner can be behind it, unless this process serves r twice.
		if c, err := dialOwner(r.Path()); err == nil {
			c.Close()
			return nil, fmt.Errorf("serve the repository: %s already answers: the repository is already being served", sock)
		}
		if err := os.Remove(sock); err != nil {
			return nil, fmt.Errorf("serve the repository: remove the stale socket: %w", err)
		}
	}
	// The socket is bound under another name, made 0600, and only then
	// renamed to sock: bound as sock, it would answer with the mode the
	// umask gave it (0755) until the chmod.
	const fresh = "owner.sock.new"
	tmp := filepath.Join(run, fresh)
	os.Remove(tmp) // left by an owner killed while starting (we hold the lock)
	addr, fd, err := socketAddrOf(run, fresh)
	if err != nil {
		return nil, fmt.Errorf("serve the repository: %w", err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("serve the repository on %s: %w", sock, err)
	}
	ln.SetUnlinkOnClose(false) // addr may be the /proc path; we remove sock ourselves
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		err = os.Rename(tmp, sock)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("serve the repository: %w", err)
	}
	logger := a.logger()
	s := &ownerServer{repo: r, ln: ln, sock: sock, log: logger.Error, mem: a.mem,
		writer: make(chan struct{}, 1), conns: map[net.Conn]bool{}}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.stop = context.AfterFunc(s.ctx, s.stopListening)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Close stops taking clients, cancels the commands that are running, waits
// for them to end (their clients get their exit codes) and returns. Calling
// it again does nothing.
func (s *ownerServer) Close() error {
	s.closed.Do(func() {
		s.stop()
		s.stopListening()
		s.cancel()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			// A command still blocked writing to a client that does not read:
			// fail its writes so that it ends.
			s.mu.Lock()
			for c := range s.conns {
				c.SetDeadline(time.Now())
			}
			s.mu.Unlock()
			<-done
		}
	})
	return nil
}

// stopListening removes the socket, so that new commands find no owner,
// and closes the listener.
func (s *ownerServer) stopListening() {
	s.unlisten.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		os.Remove(s.sock)
		s.ln.Close()
	})
}

func (s *ownerServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log("owner socket: accept failed; retrying", "err", err) // e.g. out of file descriptors
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serve(c)
		}()
	}
}

// serve runs one client's command.
func (s *ownerServer) serve(c *net.UnixConn) {
	fc := &frameConn{c: c}
	refuse := func(format string, args ...any) {
		fc.send(frameStderr, fmt.Appendf(nil, "snapforge: "+format+"\n", args...))
		s.sendExit(fc, exitError)
	}
	// Who connected, before anything they send: the uid, and the process
	// itself (a pidfd), which a pid could be reused from while the request
	// is awaited.
	uid, pid, err := peerCred(c)
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a client sends its request at once
	if err != nil || (uid != uint32(os.Geteuid()) && uid != 0) {
		who := "an unknown user"
		if err == nil {
			who = fmt.Sprintf("uid %d", uid)
		}
		// The request is read first, into nothing: a client whose request
		// could not be written takes the owner for gone and runs locally.
		discardFrame(br)
		refuse("the process that owns this repository (pid %d, uid %d) serves only its own user and root; refused a command from %s", os.Getpid(), os.Geteuid(), who)
		return
	}
	peer := peerProcess(c, pid)
	if peer >= 0 {
		defer unix.Close(peer)
	}
	var buf []byte
	kind, p, err := readFrameMax(br, &buf, maxRequest)
	c.SetReadDeadline(time.Time{})
	if errors.Is(err, errFrameTooLarge) {
		refuse("the process that owns this repository (pid %d) cannot take a command line this long (%v); pass fewer arguments at once", os.Getpid(), err)
		return
	}
	if err != nil {
		return // not a client of ours, or gone
	}
	var req ownerRequest
	if kind != frameRequest || json.Unmarshal(p, &req) != nil {
		var v struct {
			Version int `json:"version"`
		}
		if kind == frameRequest && json.Unmarshal(p, &v) == nil && v.Version != ownerProtocol {
			refuse("the process that owns this repository (pid %d) speaks owner protocol %d and this snapforge %d; use the same snapforge version for both, or stop that process", os.Getpid(), ownerProtocol, v.Version)
			return
		}
		refuse("the process that owns this repository (pid %d) did not understand the request; use the same snapforge version for both", os.Getpid())
		return
	}
	args := make([]string, len(req.Args))
	for i, b := range req.Args {
		args[i] = string(b)
	}
	if req.Version != ownerProtocol {
		refuse("the process that owns this repository (pid %d) speaks owner protocol %d and this snapforge %d; use the same snapforge version for both, or stop that process", os.Getpid(), ownerProtocol, req.Version)
		return
	}
	var cmd *command
	if len(args) > 0 && ownerServes[args[0]] {
		cmd = findCommand(args[0])
	}
	if cmd == nil {
		refuse("the process that owns this repository (pid %d) does not run %q for clients", os.Getpid(), strings.Join(args, " "))
		return
	}
	var view *clientView
	if readsOrWritesFiles[cmd.name] {
		var why string
		if view, why = viewOf(uid, pid, peer); why != "" {
			fc.send(frameStderr, fmt.Appendf(nil, "snapforge %s: %s %s)\n", cmd.name, why, stopOwnerHint(os.Getpid())))
			s.sendExit(fc, exitError)
			return
		}
		if view != nil {
			defer view.close()
		}
	}

	// The command's audit events name the client, not this process.
	ctx, cancel := context.WithCancel(snapshot.WithActor(s.ctx, clientActor(uid, pid)))
	defer cancel()
	watched := make(chan struct{})
	go func() { // a cancel frame, or a connection that drops, cancels the command
		defer close(watched)
		var buf []byte
		for {
			kind, _, err := readFrame(br, &buf)
			if err != nil || kind == frameCancel {
				cancel()
				return
			}
		}
	}()
	defer func() {
		c.SetReadDeadline(time.Now()) // ends the watcher once the command is done
		<-watched
	}()

	a := &app{stdout: frameWriter{fc, frameStdout}, stderr: frameWriter{fc, frameStderr},
		repo: s.repo.Path(), json: req.JSON, tty: req.TTY, cwd: string(req.Cwd), shared: s.repo, loc: zoneOf(req.TZ), view: view}
	err = s.run(ctx, a, cmd, args[1:], req.PID)
	if errors.Is(err, context.Canceled) && s.ctx.Err() != nil {
		fmt.Fprintf(a.stderr, "snapforge %s: the process that owns the repository (pid %d) is stopping\n", cmd.name, os.Getpid())
	}
	s.sendExit(fc, a.exitCode(cmd, err))
}

// run runs c, one at a time with the other commands that write the
// repository, and returns once c has released everything it held: a client
// that has its exit code may run its next command at once.
func (s *ownerServer) run(ctx context.Context, a *app, c *command, args []string, pid int) error {
	defer s.busy()()
	if writesRepository(c, args) {
		unlock, err := s.lockWriter(ctx, a, c, pid)
		if err != nil {
			return err
		}
		defer unlock()
	}
	return s.runSafely(ctx, a, c, args)
}

// busy lifts the process's soft memory limit while commands run and
// returns the function that puts it back after the last one. The mount
// keeps an idle owner small (mountMemoryLimit); a backup or restore it runs
// for a client needs the same memory as when run on its own, without the
// garbage collector working against a limit sized for browsing.
func (s *ownerServer) busy() (done func()) {
	if s.mem != nil {
		return s.mem.lift()
	}
	s.mu.Lock()
	if s.running == 0 {
		s.idleMem = debug.SetMemoryLimit(math.MaxInt64)
	}
	s.running++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.running--; s.running == 0 {
			debug.SetMemoryLimit(s.idleMem)
		}
		s.mu.Unlock()
	}
}

// lockWriter waits, until ctx ends, for the right to write the repository,
// saying on the client's stderr when it has to wait, and returns the
// function that gives it back.
func (s *ownerServer) lockWriter(ctx context.Context, a *app, c *command, pid int) (unlock func(), err error) {
	select {
	case s.writer <- struct{}{}:
	default:
		s.mu.Lock()
		cur := s.writing
		s.mu.Unlock()
		if cur == "" {
			cur = "another command"
		}
		fmt.Fprintf(a.stderr, "snapforge %s: waiting for %s to finish: commands that write the repository run one at a time\n", c.name, cur)
		select {
		case s.writer <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	s.writing = fmt.Sprintf("`snapforge %s` (pid %d)", c.name, pid)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.writing = ""
		s.mu.Unlock()
		<-s.writer
	}, nil
}

// runSafely runs c, turning a panic into an error so that one command
// cannot take the owner (and the mount it serves) down.
func (s *ownerServer) runSafely(ctx context.Context, a *app, c *command, args []string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log("owner: command panicked", "command", c.name, "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error (a bug in snapforge, please report it): %v", v)
		}
	}()
	return c.run(ctx, a, args)
}

func (s *ownerServer) sendExit(fc *frameConn, code int) {
	b, _ := json.Marshal(ownerExit{Code: code})
	fc.send(frameExit, b)
}

// peerCred returns the uid and pid of the process at the other end of c,
// as the kernel saw them when it connected.
func peerCred(c *net.UnixConn) (uid uint32, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if cerr != nil {
		return 0, 0, cerr
	}
	return cred.Uid, int(cred.Pid), nil
}

// soPeerPidfd is SO_PEERPIDFD (Linux 6.5): a pidfd of the process that
// connected, which no later process can take over as a pid can be reused.
const soPeerPidfd = 77

// peerProcess returns a pidfd of the process at the other end of c (pid, as
// SO_PEERCRED gave it): the kernel's SO_PEERPIDFD, else one opened now; -1
// when neither is possible. A pidfd outlives its process but never names
// another: a check made through /proc/PID is trusted only when the pidfd
// says the process still runs after it.
func peerProcess(c *net.UnixConn, pid int) int {
	fd := -1
	if raw, err := c.SyscallConn(); err == nil {
		raw.Control(func(s uintptr) {
			if v, err := unix.GetsockoptInt(int(s), unix.SOL_SOCKET, soPeerPidfd); err == nil {
				fd = v
			}
		})
	}
	if fd < 0 && pid > 0 {
		if v, err := unix.PidfdOpen(pid, 0); err == nil {
			fd = v // older kernels: opened at accept, before the request is awaited
		}
	}
	return fd
}

// alive reports whether the process of pidfd fd still runs.
func alive(fd int) bool { return fd >= 0 && unix.PidfdSendSignal(fd, 0, nil, 0) == nil }

// readsOrWritesFiles are the commands that name files outside the
// repository (a backup's source, a restore's target): the owner opens them
// for the client, so it must see the files the client sees, with the
// client's rights.
var readsOrWritesFiles = map[string]bool{"backup": true, "restore": true}

// clientView is a client's view of the filesystem, other than the owner's
// (another mount namespace: a container, a service with a private /tmp; or
// a chroot): its root directory, through which the owner checks that a
// path names the same file for both (clientSees).
type clientView struct {
	root  int // O_PATH descriptor of /proc/PID/root
	pid   int
	pidfd int
}

func (v *clientView) close() { unix.Close(v.root) }

// viewOf says why the owner cannot act on files for the client uid, pid
// (pidfd peer): it runs as another user (root's command sent to a user's
// mount would read and write with that user's rights), or its view of the
// filesystem cannot be known. It returns the client's view when it is not
// the owner's, nil when it is.
func viewOf(uid uint32, pid, peer int) (*clientView, string) {
	if euid := os.Geteuid(); uid != uint32(euid) {
		return nil, fmt.Sprintf("this command runs as uid %d, and the process that owns this repository as uid %d: it would read and write your files with uid %d's rights, not yours (run the command as uid %d, or", uid, euid, euid, euid)
	}
	cannot := func(err error) (*clientView, string) {
		return nil, fmt.Sprintf("cannot tell whether the process that owns this repository sees the files you see (%v) (run the command where that process runs, or", err)
	}
	proc := fmt.Sprintf("/proc/%d", pid)
	theirGroups, err := groupsOf(proc)
	if err != nil {
		return cannot(err)
	}
	if ourGroups, err := groupsOf("/proc/self"); err != nil {
		return cannot(err)
	} else if !theirGroups.equal(ourGroups) {
		return nil, fmt.Sprintf("this command runs with %s, and the process that owns this repository with %s: it would read and write your files with that process's group rights, not yours (run the command with the same groups, from a new login after a change of groups, or", theirGroups, ourGroups)
	}
	ours, err1 := os.Readlink("/proc/self/ns/mnt")
	theirs, err2 := os.Readlink(proc + "/ns/mnt")
	root, err3 := unix.Open(proc+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err := errors.Join(err1, err2, err3); err != nil {
		if err3 == nil {
			unix.Close(root)
		}
		return cannot(err)
	}
	var a, b unix.Stat_t
	if err := errors.Join(unix.Stat("/", &a), unix.Fstat(root, &b)); err != nil {
		unix.Close(root)
		return cannot(err)
	}
	if !alive(peer) { // the pid may name another process by now
		unix.Close(root)
		return cannot(errors.New("the command's process is gone"))
	}
	if ours == theirs && a.Dev == b.Dev && a.Ino == b.Ino {
		unix.Close(root)
		return nil, ""
	}
	return &clientView{root: root, pid: pid, pidfd: peer}, ""
}

// procGroups are the group ids a process accesses files with: its
// filesystem gid and its supplementary groups (sorted, without repeats).
type procGroups struct {
	gid    int
	groups []int
}

func (g procGroups) equal(o procGroups) bool {
	return g.gid == o.gid && slices.Equal(g.groups, o.groups)
}

// String says it for a message: "gid 1000 and supplementary groups 4, 24,
// 1000", or "gid 0 and no supplementary groups".
func (g procGroups) String() string {
	if len(g.groups) == 0 {
		return fmt.Sprintf("gid %d and no supplementary groups", g.gid)
	}
	ids := make([]string, len(g.groups))
	for i, id := range g.groups {
		ids[i] = strconv.Itoa(id)
	}
	return fmt.Sprintf("gid %d and supplementary groups %s", g.gid, strings.Join(ids, ", "))
}

// sameMountsBelow says how the file systems mounted at or below abs differ
// between the client's view and the owner's, "" when they do not: a
// container or a service with a bind mount on a subdirectory of the backup's
// root sees other files there, though the root is one directory for both
// (acceptance run 4: the owner backed up its own config/ under the client's
// name, and an in-place restore rewrote the owner's). Mounts are compared
// by mount point, device and root within the device (their ids differ from
// one namespace to another); for the client as seen from its own root.
func (v *clientView) sameMountsBelow(abs string) string {
	ours, err := mountsBelow("/proc/self/mountinfo", abs)
	if err != nil {
		return err.Error()
	}
	theirs, err := mountsBelow(fmt.Sprintf("/proc/%d/mountinfo", v.pid), abs)
	if err == nil && !alive(v.pidfd) {
		err = errors.New("the command's process is gone")
	}
	if err != nil {
		return err.Error()
	}
	for i := 0; i < max(len(ours), len(theirs)); i++ {
		switch {
		case i >= len(ours):
			return "a file system is mounted at " + snapshot.DisplayName(theirs[i].at) + " for this command and not for that process"
		case i >= len(theirs) || ours[i].at != theirs[i].at:
			return "a file system is mounted at " + snapshot.DisplayName(ours[i].at) + " for that process and not for this command"
		case ours[i] != theirs[i]:
			return "another file system is mounted at " + snapshot.DisplayName(ours[i].at) + " for this command than for that process"
		}
	}
	return ""
}

// mountEntry is a mount as mountinfo lists it: where, which device, and
// which directory of the device.
type mountEntry struct{ at, dev, root string }

// mountsBelow returns the mounts of the mountinfo file at path whose mount
// point is abs or below it, in the file's order (the order they were
// mounted: later ones cover earlier ones).
func mountsBelow(path, abs string) ([]mountEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs = filepath.Clean(abs)
	var out []mountEntry
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options ...
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		at := snapshot.UnescapeMount(f[4])
		if at == abs || strings.HasPrefix(at, abs+"/") || abs == "/" {
			out = append(out, mountEntry{at: at, dev: f[2], root: snapshot.UnescapeMount(f[3])})
		}
	}
	return out, nil
}

// groupsOf returns the groups of the process at proc (/proc/PID), from its
// status. A process given groups since its login (newgrp, sg, a login
// after usermod -aG) has others than one started before; the owner's would
// decide what a client's command may read.
func groupsOf(proc string) (procGroups, error) {
	b, err := os.ReadFile(proc + "/status")
	if err != nil {
		return procGroups{}, err
	}
	g := procGroups{gid: -1}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Gid:"); ok {
			if f := strings.Fields(rest); len(f) == 4 { // real, effective, saved, filesystem
				if g.gid, err = strconv.Atoi(f[3]); err != nil {
					return procGroups{}, fmt.Errorf("%s/status: gid %q", proc, f[3])
				}
			}
		} else if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, id := range strings.Fields(rest) {
				n, err := strconv.Atoi(id)
				if err != nil {
					return procGroups{}, fmt.Errorf("%s/status: group %q", proc, id)
				}
				g.groups = append(g.groups, n)
			}
		}
	}
	if g.gid < 0 {
		return procGroups{}, fmt.Errorf("%s/status names no gid", proc)
	}
	slices.Sort(g.groups)
	g.groups = slices.Compact(g.groups)
	return g, nil
}

// clientSees checks, in the owner, that abs (a path the command is about
// to read or write for its client) names the same file for the client as
// for the owner: the nearest existing ancestor of abs, resolved in the
// client's root (absolute symlinks stay inside it) and in the owner's, is
// one directory. Otherwise the command would back up, or restore into,
// files the client does not see (acceptance run 3: a client in a container
// had the owner's /x backed up under its name). nil without a client view.
func (a *app) clientSees(abs string) error {
	v := a.view
	if v == nil {
		return nil
	}
	p := filepath.Clean(abs)
	for {
		var ours unix.Stat_t
		if err := unix.Stat(p, &ours); err == nil {
			rel := strings.TrimPrefix(p, "/")
			if rel == "" {
				rel = "."
			}
			fd, err := unix.Openat2(v.root, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
			var theirs unix.Stat_t
			if err == nil {
				err = unix.Fstat(fd, &theirs)
				unix.Close(fd)
			}
			if err == nil && !alive(v.pidfd) {
				err = errors.New("the command's process is gone")
			}
			why := ""
			switch {
			case err != nil:
				why = err.Error() + " at " + snapshot.DisplayName(p)
			case ours.Dev != theirs.Dev || ours.Ino != theirs.Ino:
				why = "it is another directory at " + snapshot.DisplayName(p)
			default:
				why = v.sameMountsBelow(abs)
			}
			if why != "" {
				return fmt.Errorf("%s is not the same for this command as for the process that owns the repository (pid %d), which runs in another mount namespace or root and would read or write the files it sees, not yours (%s); run the command where that process runs, or %s",
					snapshot.DisplayName(abs), os.Getpid(), why, stopOwnerHint(os.Getpid()))
			}
			return nil
		}
		if p == "/" {
			return fmt.Errorf("%s: nothing of it exists for the process that owns the repository (pid %d)", snapshot.DisplayName(abs), os.Getpid())
		}
		p = filepath.Dir(p)
	}
}

// stopOwnerHint ends viewOf's and clientSees' advice.
func stopOwnerHint(pid int) string {
	return fmt.Sprintf("stop that process, pid %d, e.g. Ctrl-C where `snapforge mount` runs, and run the command again", pid)
}

// ---- client ----

// runCommand runs c with args: through the process that owns the
// repository when one is serving it, else here.
func (a *app) runCommand(ctx context.Context, c *command, args []string) int {
	if code, ok := a.forward(ctx, c, args); ok {
		return code
	}
	// Output that could not be written (a full disk, a closed pipe's
	// reader gone) fails the command, as it does through the owner: a
	// report redirected to a file must not end 0 with the file empty.
	out := &checkedWriter{w: a.stdout}
	a.stdout = out
	err := c.run(ctx, a, args)
	// A mount that is starting holds the repository before it listens: the
	// command runs through it once it does, or here once the lock is free
	// (a mount that failed to start, or one that stopped listening and is
	// closing), within ownerStartWait.
	for deadline := time.Now().Add(ownerStartWait); ; {
		le := new(snapshot.LockedError)
		if !errors.As(err, &le) || !le.Mount() || !ownerServes[c.name] || out.n != 0 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
		if code, ok := a.forward(ctx, c, args); ok {
			return code
		}
		err = c.run(ctx, a, args)
	}
	if out.err != nil && (err == nil || errors.Is(err, out.err)) {
		done := ""
		if err == nil {
			done = "the command finished (its work is done), but " // a backup committed: do not run it again for that
		}
		fmt.Fprintf(a.stderr, "snapforge %s: %swrite output: %v\n", c.name, done, out.err)
		return exitError
	}
	return a.exitCode(c, err)
}

// checkedWriter keeps the first error of the writes to w; after it, every
// write fails with it.
type checkedWriter struct {
	w   io.Writer
	err error
	n   int64 // bytes written
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

// ownerStartWait is how long a command that found the repository held by
// a starting mount waits for the mount's socket.
const ownerStartWait = 10 * time.Second

// forward runs c through the repository's owner and returns its exit code,
// or ok false when there is no owner and c is to run here.
func (a *app) forward(ctx context.Context, c *command, args []string) (code int, ok bool) {
	if !ownerServes[c.name] || a.repo == "" {
		return 0, false
	}
	repo, err := a.abs(a.repo)
	if err != nil {
		return 0, false
	}
	// The first Ctrl-C (ctx) cancels the command in the owner, which then
	// reports as usual; a second one stops waiting for it. SIGTERM, which a
	// supervisor or `timeout` sends once, cancels too, and stops waiting
	// after termWait: an owner that does not answer (stopped, hung) must
	// not keep its client from ending. Signals are watched from before the
	// request is sent, so none can slip between.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	conn, err := dialOwner(repo)
	if err != nil {
		if ownerAbsent(err) {
			return 0, false
		}
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			fmt.Fprintf(a.stderr, "snapforge %s: %s is not open to you: the repository is another user's, and may be held by their `snapforge mount`; run the command as that user\n", c.name, ownerSocket(repo))
			return exitError, true
		}
		fmt.Fprintf(a.stderr, "snapforge %s: cannot reach the process that owns the repository through %s: %v\n", c.name, ownerSocket(repo), err)
		return exitError, true
	}
	defer conn.Close()
	wire := [][]byte{[]byte(c.name)}
	for _, arg := range args {
		wire = append(wire, []byte(arg))
	}
	var tz *string
	if v, ok := os.LookupEnv("TZ"); ok {
		tz = &v
	}
	req, _ := json.Marshal(ownerRequest{Version: ownerProtocol, Args: wire,
		Cwd: []byte(a.cwd), JSON: a.json, TTY: a.tty, PID: os.Getpid(), TZ: tz})
	if len(req) > maxRequest {
		fmt.Fprintf(a.stderr, "snapforge %s: the command line is too long to pass to the process that owns the repository (%d bytes, at most %d); pass fewer arguments at once\n", c.name, len(req), maxRequest)
		return exitUsage, true
	}
	if ctx.Err() != nil { // interrupted before it was sent: nothing ran
		fmt.Fprintf(a.stderr, "snapforge %s: interrupted before the command started; nothing was done\n", c.name)
		return exitError, true
	}
	if err := writeFrame(conn, frameRequest, req); err != nil {
		return 0, false // the owner is going away and has run nothing: run here
	}

	var gaveUp atomic.Bool
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		ctxDone, signals := ctx.Done(), 0
		var deadline <-chan time.Time
		giveUp := func() {
			gaveUp.Store(true)
			conn.Close()
		}
		for {
			select {
			case <-ctxDone:
				ctxDone = nil
				writeFrame(conn, frameCancel, nil)
			case sig := <-sigs:
				if signals++; signals == 2 {
					giveUp()
					return
				}
				if sig == syscall.SIGTERM && deadline == nil {
					deadline = time.After(termWait)
				}
			case <-deadline:
				giveUp()
				return
			case <-done:
				return
			}
		}
	}()
	defer func() { close(done); <-watched }()

	br := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	for {
		kind, p, err := readFrame(br, &buf)
		if err != nil {
			if gaveUp.Load() {
				fmt.Fprintf(a.stderr, "snapforge %s: stopped waiting for the process that owns the repository; it was asked to cancel the command, which may still have finished there (see `snapforge audit`)\n", c.name)
			} else {
				fmt.Fprintf(a.stderr, "snapforge %s: lost the connection to the process that owns the repository before the command finished (%v); see that process's output, then run the command again\n", c.name, err)
			}
			return exitError, true
		}
		switch kind {
		case frameStdout:
			if _, err := a.stdout.Write(p); err != nil {
				fmt.Fprintf(a.stderr, "snapforge %s: write output: %v\n", c.name, err)
				return exitError, true // closing the connection cancels the command
			}
		case frameStderr:
			a.stderr.Write(p)
		case frameExit:
			var x ownerExit
			if err := json.Unmarshal(p, &x); err != nil {
				fmt.Fprintf(a.stderr, "snapforge %s: the process that owns the repository sent a bad exit status: %v\n", c.name, err)
				return exitError, true
			}
			return x.Code, true
		default:
			fmt.Fprintf(a.stderr, "snapforge %s: the process that owns the repository speaks another protocol (frame %q); use the same snapforge version for both\n", c.name, kind)
			return exitError, true
		}
	}
}

// zoneOf returns the time zone a client whose TZ variable is tz (nil:
// unset) sees, as Go's runtime would pick it in the client: the system's
// /etc/localtime when unset, UTC when empty or unknown, else the zone TZ
// names (a leading ':' dropped; an absolute path is a zone file).
func zoneOf(tz *string) *time.Location {
	name := "/etc/localtime"
	if tz != nil {
		name = strings.TrimPrefix(*tz, ":")
	}
	if name == "" {
		return time.UTC
	}
	if filepath.IsAbs(name) {
		// A zone file is a few KiB; read a bounded amount of a regular
		// file only (TZ=/dev/zero must not eat the owner's memory).
		b, err := readZoneFile(name)
		if err != nil {
			return time.UTC
		}
		shown := name
		if tz == nil {
			shown = "Local"
		}
		if loc, err := time.LoadLocationFromTZData(shown, b); err == nil {
			return loc
		}
		return time.UTC
	}
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return time.UTC
}

// readZoneFile reads a time zone file of at most 1 MiB.
func readZoneFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}
