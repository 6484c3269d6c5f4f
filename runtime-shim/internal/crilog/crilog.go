// Package crilog writes container output in the CRI log format the kubelet
// reads: "<RFC3339Nano> <stream> <P|F> <content>\n", one record per line,
// lines longer than the limit split into partial (P) records.
package crilog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultMaxLine (at least 16, bufio's minimum) is the longest record content before a line is split (as containerd's max_container_log_line_size).
const DefaultMaxLine = 16 * 1024

// File is a log file shared by a container's stdout and stderr copiers that
// can be reopened after the kubelet rotates it.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// Open opens (creating, appending) the log at path.
func Open(path string) (*File, error) {
	l := &File{path: path}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reopen closes the current file and opens path again, so records after
// rotation go to the new file.
func (l *File) Reopen() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// Write writes one whole record atomically with respect to the other stream.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, os.ErrClosed
	}
	return l.f.Write(p)
}

// Close closes the file; later writes fail.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Copy reads src until EOF and writes CRI records for stream ("stdout" or
// "stderr") to dst, one Write per record. now stamps each record.
func Copy(dst io.Writer, src io.Reader, stream string, maxLine int, now func() time.Time) error {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	r := bufio.NewReaderSize(src, maxLine)
	var rec []byte
	for {
		line, err := r.ReadSlice('\n')
		tag := byte('F')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			tag = 'P'
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil
			}
		default:
			if len(line) == 0 {
				return err
			}
		}
		rec = rec[:0]
		rec = now().UTC().AppendFormat(rec, time.RFC3339Nano)
		rec = append(rec, ' ')
		rec = append(rec, stream...)
		rec = append(rec, ' ', tag, ' ')
		rec = append(rec, line...)
		rec = append(rec, '\n')
		if _, werr := dst.Write(rec); werr != nil && !errors.Is(werr, os.ErrClosed) {
			return werr
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
