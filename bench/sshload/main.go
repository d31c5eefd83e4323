// Command sshload is the SSH side of make bench that needs no real client:
// login latency and many idle sessions.
//
//	sshload login -addr H:P -key FILE -user NAME [-n 200] [-hostkey FILE.pub]
//	sshload login -addr H:P -key FILE -totp FILE [-n 200]   (one MFA user per login)
//	sshload hold  -addr H:P -key FILE -user NAME [-n 200]
//	sshload handles -addr H:P -key FILE -user NAME [-n 100] [-handles 16] [-ahead 2097152]
//
// A login is: TCP connect, key exchange, public-key (and TOTP) auth, open a
// session channel, start the sftp subsystem and finish SFTP INIT/VERSION.
// login prints a JSON object of latencies in milliseconds. hold opens n such
// sessions, prints "ready" and keeps them open until stdin closes. handles
// opens n sessions, each with -handles upload handles, and writes -ahead
// bytes to every handle out of order (never the first chunk, so all of it
// waits in the gateway's reorder memory); it prints a JSON summary and
// keeps everything open until stdin closes (the uploads are then aborted).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sshload:", err)
		os.Exit(1)
	}
}

type mfaUser struct {
	name, secret string
	signer       ssh.Signer
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: sshload login|hold [flags]")
	}
	cmd := args[0]
	fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
	addr := fl.String("addr", "", "server host:port")
	keyFile := fl.String("key", "", "private key file")
	user := fl.String("user", "", "user name (key-only)")
	totpFile := fl.String("totp", "", `file of "name secret keyfile" lines: key+TOTP logins, one user each`)
	hostKey := fl.String("hostkey", "", "server host public key (.pub); empty: not checked")
	n := fl.Int("n", 200, "logins or sessions")
	par := fl.Int("parallel", 8, "connections opened at once (hold, handles)")
	perSess := fl.Int("handles", 16, "upload handles per session (handles)")
	ahead := fl.Int64("ahead", 2<<20, "bytes written out of order to each handle (handles)")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	pem, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return err
	}
	hkcb := ssh.InsecureIgnoreHostKey() // loopback benchmark against servers we just started
	if *hostKey != "" {
		b, err := os.ReadFile(*hostKey)
		if err != nil {
			return err
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return err
		}
		hkcb = ssh.FixedHostKey(pk)
	}
	var mfa []mfaUser
	if *totpFile != "" {
		if mfa, err = readTOTP(*totpFile); err != nil {
			return err
		}
		if len(mfa) < *n {
			return fmt.Errorf("%d MFA users for %d logins: a TOTP code is accepted once per user and time step", len(mfa), *n)
		}
	}
	cfgFor := func(i int) *ssh.ClientConfig {
		c := &ssh.ClientConfig{User: *user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: hkcb, Timeout: 30 * time.Second}
		if mfa != nil {
			u := mfa[i]
			c.User = u.name
			c.Auth = []ssh.AuthMethod{ssh.PublicKeys(u.signer), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
				code, err := totp.GenerateCodeCustom(u.secret, time.Now(),
					totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
				ans := make([]string, len(qs))
				for i := range ans {
					ans[i] = code
				}
				return ans, err
			})}
		}
		return c
	}
	switch cmd {
	case "login":
		return login(*addr, *n, cfgFor)
	case "hold":
		return hold(*addr, *n, *par, cfgFor)
	case "handles":
		return handles(*addr, *n, *par, *perSess, *ahead, cfgFor)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func readTOTP(path string) ([]mfaUser, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []mfaUser
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		pem, err := os.ReadFile(f[2])
		if err != nil {
			return nil, err
		}
		s, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, err
		}
		out = append(out, mfaUser{f[0], f[1], s})
	}
	return out, nil
}

// session is one logged-in connection with SFTP running.
type session struct {
	c  *ssh.Client
	sc *sftp.Client
}

func (s *session) Close() { _ = s.sc.Close(); _ = s.c.Close() }

func open(addr string, cfg *ssh.ClientConfig) (*session, error) {
	c, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	// NewClient starts the subsystem and completes SFTP INIT/VERSION.
	sc, err := sftp.NewClient(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &session{c, sc}, nil
}

func login(addr string, n int, cfgFor func(int) *ssh.ClientConfig) error {
	lat := make([]float64, 0, n)
	for i := range n {
		cfg := cfgFor(i)
		t0 := time.Now()
		s, err := open(addr, cfg)
		if err != nil {
			return fmt.Errorf("login %d: %w", i, err)
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
		s.Close()
	}
	sort.Float64s(lat)
	pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	sum := 0.0
	for _, v := range lat {
		sum += v
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"n": n, "min_ms": lat[0], "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
		"max_ms": lat[len(lat)-1], "mean_ms": sum / float64(n),
	})
}

func hold(addr string, n, par int, cfgFor func(int) *ssh.ClientConfig) error {
	sessions := make([]*session, n)
	errs := make([]error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sessions[i], errs[i] = open(addr, cfgFor(i))
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Every session answers a request, so the server has really set it up.
	for i, s := range sessions {
		if _, err := s.sc.Getwd(); err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}

// handles is the memory worst case of item 7: many sessions, every one
// with all its handles holding out-of-order data.
func handles(addr string, n, par, perSess int, ahead int64, cfgFor func(int) *ssh.ClientConfig) error {
	const chunk = 255 << 10 // what OpenSSH sends with limits@openssh.com
	sessions := make([]*session, n)
	errs := make([]error, n)
	var opened, refusedOpens, accepted, refused atomic.Int64
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := ssh.Dial("tcp", addr, cfgFor(i))
			if err != nil {
				errs[i] = err
				return
			}
			sc, err := sftp.NewClient(c, sftp.MaxPacketUnchecked(chunk))
			if err != nil {
				c.Close()
				errs[i] = err
				return
			}
			sessions[i] = &session{c, sc}
			for h := range perSess {
				f, err := sc.OpenFile(fmt.Sprintf("rss-%03d-%02d", i, h), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
				if err != nil {
					refusedOpens.Add(1)
					continue
				}
				opened.Add(1)
				// Offsets chunk, 2*chunk, ...: the gap at 0 is never filled.
				for off := int64(chunk); off <= ahead; off += chunk {
					if _, err := f.WriteAt(buf, off); err != nil {
						refused.Add(1)
						break
					}
					accepted.Add(chunk)
				}
				// The handle stays open: closing it would free its data.
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{
		"sessions": n, "handles_open": opened.Load(), "handles_refused": refusedOpens.Load(),
		"bytes_ahead_accepted": accepted.Load(), "handles_refused_writing": refused.Load(),
	}); err != nil {
		return err
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}
