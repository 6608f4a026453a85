// leaky-service: the bundled example `cargo xtask demo` traces.
//
// It behaves like a small service for about eight seconds (long enough for
// leaktrace to sample it and judge each stack): it reloads its
// configuration, serves requests that read a file, asks a fraud-check
// backend about each order, and rotates its log. Four bugs leak file
// descriptors, each from its own function:
//   - reloadConfig forgets to close the file when the config is invalid;
//   - checkFraud returns early when the backend answers 503 and never closes
//     the connection, which the backend has closed: it sits in CLOSE_WAIT;
//   - rotateLog opens the new log but never closes the old one;
//   - notifyWorkers creates a wake-up pipe per batch and keeps it.
//
// handleRequest opens and closes correctly and must not show up.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

type service struct {
	log       *os.File
	logDir    string
	wakeups   []*os.File
	fraudAddr string
}

var (
	errInvalid     = errors.New("invalid config")
	errUnavailable = errors.New("fraud check unavailable")
)

//go:noinline
func (s *service) reloadConfig(generation int) error {
	f, err := os.Open("/etc/hostname")
	if err != nil {
		return err
	}
	buf := make([]byte, 64)
	if _, err := f.Read(buf); err != nil && err != io.EOF {
		return err
	}
	if generation%5 == 0 {
		return errInvalid // the file stays open
	}
	return f.Close()
}

//go:noinline
func (s *service) checkFraud() error {
	conn, err := net.Dial("tcp", s.fraudAddr)
	if err != nil {
		return err
	}
	status := make([]byte, 4)
	if _, err := io.ReadFull(conn, status); err != nil {
		conn.Close()
		return err
	}
	if string(status[:3]) != "200" {
		return errUnavailable // the connection stays open
	}
	return conn.Close()
}

// fraudBackend answers every connection with a status and closes it: 503
// for one in four.
func fraudBackend(ln net.Listener) {
	for n := 1; ; n++ {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		status := "200\n"
		if n%4 == 0 {
			status = "503\n"
		}
		conn.Write([]byte(status))
		conn.Close()
	}
}

//go:noinline
func (s *service) rotateLog(n int) error {
	next, err := os.Create(filepath.Join(s.logDir, fmt.Sprintf("service.log.%d", n)))
	if err != nil {
		return err
	}
	s.log = next // the previous log file is never closed
	return nil
}

//go:noinline
func (s *service) notifyWorkers() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	s.wakeups = append(s.wakeups, r, w)
	return nil
}

//go:noinline
func handleRequest() error {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

func main() {
	dir, err := os.MkdirTemp("", "leaky-service")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go fraudBackend(ln)
	s := &service{logDir: dir, fraudAddr: ln.Addr().String()}
	for tick := 1; tick <= 100; tick++ {
		for i := 0; i < 20; i++ {
			if err := handleRequest(); err != nil {
				panic(err)
			}
		}
		if err := s.reloadConfig(tick); err != nil && !errors.Is(err, errInvalid) {
			panic(err)
		}
		if err := s.checkFraud(); err != nil && !errors.Is(err, errUnavailable) {
			panic(err)
		}
		if tick%10 == 0 {
			if err := s.rotateLog(tick / 10); err != nil {
				panic(err)
			}
		}
		if tick%25 == 0 {
			if err := s.notifyWorkers(); err != nil {
				panic(err)
			}
		}
		time.Sleep(80 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "leaky-service: served 2000 requests, checked 100 orders")
}
