package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sftpgw/sftpgw/vfs"
)

// Check is one readiness condition.
type Check struct {
	Name string
	Fn   func(context.Context) error
}

// StoreCheck is a cheap probe of a bucket: one List of at most one key
// below prefix (the prefix keeps it inside what a least-privilege policy
// allows).
func StoreCheck(name, prefix string, s vfs.Store) Check {
	return Check{Name: name, Fn: func(ctx context.Context) error {
		_, err := s.List(ctx, vfs.ListOptions{Prefix: prefix, Limit: 1})
		return err
	}}
}

// Health answers /readyz from checks run at most once per TTL: load
// balancers and orchestrators poll often, and every poll must not become
// a request to S3.
type Health struct {
	checks   []Check
	ttl      time.Duration
	timeout  time.Duration
	log      hclog.Logger
	draining atomic.Bool

	mu      sync.Mutex // held while probing: concurrent polls share one probe
	at      time.Time
	results map[string]string
}

// HealthOptions configure NewHealth.
type HealthOptions struct {
	Checks  []Check
	TTL     time.Duration // default 5s
	Timeout time.Duration // per check; default 3s
	Log     hclog.Logger
}

// NewHealth builds the readiness state.
func NewHealth(o HealthOptions) *Health {
	if o.TTL <= 0 {
		o.TTL = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	return &Health{checks: o.Checks, ttl: o.TTL, timeout: o.Timeout, log: o.Log}
}

// SetDraining makes /readyz fail from now on, so a load balancer stops
// sending new clients while the gateway shuts down.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Ready runs (or reuses) the checks and reports each as "ok" or
// "unreachable", plus "draining" during shutdown. The detailed error goes
// to the log only; the HTTP answer never carries raw S3 errors.
func (h *Health) Ready(ctx context.Context) (bool, map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.results == nil || time.Since(h.at) >= h.ttl {
		res := make(map[string]string, len(h.checks))
		var wg sync.WaitGroup
		var rmu sync.Mutex
		for _, c := range h.checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
				defer cancel()
				status := "ok"
				if err := c.Fn(cctx); err != nil {
					status = "unreachable"
					if errors.Is(err, context.DeadlineExceeded) {
						status = "timeout"
					}
					if prev := h.results[c.Name]; prev != status {
						h.log.Warn("readiness check failed", "check", c.Name, "error", err.Error())
					}
				} else if prev := h.results[c.Name]; prev != "" && prev != "ok" {
					h.log.Info("readiness check recovered", "check", c.Name)
				}
				rmu.Lock()
				res[c.Name] = status
				rmu.Unlock()
			}()
		}
		wg.Wait()
		h.results, h.at = res, time.Now()
	}
	out := make(map[string]string, len(h.results)+1)
	ok := true
	for k, v := range h.results {
		out[k] = v
		ok = ok && v == "ok"
	}
	if h.draining.Load() {
		out["shutdown"] = "draining"
		ok = false
	}
	return ok, out
}

// Handler serves /metrics, /healthz (the process answers) and /readyz
// (stores reachable, not shutting down). health may be nil (always ready).
func (m *Metrics) Handler(health *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if health == nil {
			writeJSON(w, http.StatusOK, map[string]any{"ready": true})
			return
		}
		ok, checks := health.Ready(r.Context())
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ready": ok, "checks": checks})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is the metrics and health HTTP listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr now, so a bad address fails the start of the gateway
// rather than going unnoticed.
func Listen(addr string, h http.Handler, log hclog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	return &Server{srv: srv, ln: ln}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers until Shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the listener and waits for requests in flight (bounded by ctx).
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
