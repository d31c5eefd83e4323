// Command delayproxy is a TCP proxy that delays every chunk by a fixed time
// in each direction, without limiting throughput: a stand-in for network
// latency where the kernel has no netem qdisc. Each chunk is read as soon
// as it arrives, stamped, and written once its delay has passed, so many
// chunks are in flight at once (as on a long link).
//
//	delayproxy -listen 127.0.0.1:0 -to 127.0.0.1:9000 -delay 10ms
//
// prints the address it listens on (one line) and serves until killed.
// -delay is one way: 10ms gives a 20 ms round trip.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"
)

type chunk struct {
	b   []byte
	due time.Time
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	to := flag.String("to", "", "address to forward to")
	delay := flag.Duration("delay", 10*time.Millisecond, "delay of each chunk, each way")
	flag.Parse()
	if *to == "" {
		log.Fatal("delayproxy: -to is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr())
	os.Stdout.Sync()
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c, *to, *delay)
	}
}

func serve(c net.Conn, to string, delay time.Duration) {
	u, err := net.Dial("tcp", to)
	if err != nil {
		log.Print(err)
		c.Close()
		return
	}
	done := make(chan struct{})
	go func() { pipe(u, c, delay); close(done) }()
	pipe(c, u, delay)
	<-done
	c.Close()
	u.Close()
}

// pipe copies src to dst, each chunk delay after it was read, and half
// closes dst when src ends (closing both when either side fails).
func pipe(dst, src net.Conn, delay time.Duration) {
	// Bounded: at most 1024 chunks of 32 KiB (32 MiB) waiting per direction.
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range q {
		time.Sleep(time.Until(ch.due))
		if _, err := dst.Write(ch.b); err != nil {
			dst.Close()
			src.Close()
			for range q { // let the reader finish
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
}
