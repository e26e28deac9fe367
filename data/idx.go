package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// IDX is the file format of the MNIST distribution: a 4-byte magic number (two zero bytes, a
// type code, the number of dimensions), the dimensions as big-endian uint32, then the values in
// row-major order. Only the unsigned-byte type (code 0x08) is used by MNIST and supported here.
const (
	idxTypeUbyte = 0x08
	// maxIDXBytes bounds the decoded size so that a corrupt header cannot make us allocate
	// unbounded memory (MNIST's largest file decodes to 47 MB).
	maxIDXBytes = 1 << 31
	// readChunk is the first buffer size of DecodeIDX; the buffer then doubles as data actually
	// arrives, so a header that lies about its size costs at most about twice the bytes present.
	readChunk = 1 << 20
	// streamBuffer is the read-ahead buffer between the (gzip) source and the consumer.
	streamBuffer = 256 << 10
)

// gzipMagic starts every gzip stream (RFC 1952).
var gzipMagic = [2]byte{0x1f, 0x8b}

// DecodeIDX reads an unsigned-byte IDX file, gzip-compressed or not (detected from its first
// bytes), and returns its dimensions and values. It rejects a wrong magic number, a declared size
// above 2 GiB, a truncated body and trailing bytes after the declared values; for gzip input it
// also checks the gzip checksum.
func DecodeIDX(r io.Reader) (dims []int, values []byte, err error) {
	s, err := openIDX(r)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	values = make([]byte, 0, min(s.total, readChunk))
	err = s.stream(func(chunk []byte) {
		if len(values)+len(chunk) > cap(values) {
			bigger := make([]byte, len(values), min(max(2*cap(values), len(values)+len(chunk)), s.total))
			copy(bigger, values)
			values = bigger
		}
		values = append(values, chunk...)
	})
	if err != nil {
		return nil, nil, err
	}
	return s.dims, values, nil
}

// idxStream is an IDX file whose header has been read and whose values are still to come.
type idxStream struct {
	src   *bufio.Reader
	gz    *gzip.Reader // nil for uncompressed input
	dims  []int
	total int // number of values: the product of dims
}

// openIDX reads the header of an IDX file, decompressing gzip input transparently.
func openIDX(r io.Reader) (*idxStream, error) {
	s := &idxStream{src: bufio.NewReaderSize(r, streamBuffer)}
	if head, _ := s.src.Peek(2); len(head) == 2 && [2]byte(head) == gzipMagic {
		zr, err := gzip.NewReader(s.src)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		zr.Multistream(false)
		s.gz, s.src = zr, bufio.NewReaderSize(zr, streamBuffer)
	}
	fail := func(err error) (*idxStream, error) {
		s.close()
		return nil, err
	}
	var magic [4]byte
	if _, err := io.ReadFull(s.src, magic[:]); err != nil {
		return fail(fmt.Errorf("IDX header: %w", eofIsUnexpected(err)))
	}
	if magic[0] != 0 || magic[1] != 0 || magic[3] == 0 {
		return fail(fmt.Errorf("not an IDX file: magic number % x, want 00 00 <type> <dimensions>", magic))
	}
	if magic[2] != idxTypeUbyte {
		return fail(fmt.Errorf("IDX value type 0x%02x not supported, want 0x%02x (unsigned byte)", magic[2], idxTypeUbyte))
	}
	s.dims = make([]int, magic[3])
	s.total = 1
	for i := range s.dims {
		var d [4]byte
		if _, err := io.ReadFull(s.src, d[:]); err != nil {
			return fail(fmt.Errorf("IDX header, dimension %d of %d: %w", i+1, len(s.dims), eofIsUnexpected(err)))
		}
		s.dims[i] = int(binary.BigEndian.Uint32(d[:]))
		if s.dims[i] != 0 && s.total > maxIDXBytes/s.dims[i] {
			return fail(fmt.Errorf("IDX dimensions %v declare more than %d bytes", s.dims[:i+1], maxIDXBytes))
		}
		s.total *= s.dims[i]
	}
	return s, nil
}

// stream hands the values to consume in consecutive chunks (views into a reused buffer, valid
// only during the call), then checks that the input ends right after them.
func (s *idxStream) stream(consume func(chunk []byte)) error {
	for done := 0; done < s.total; {
		chunk, err := s.src.Peek(min(s.total-done, streamBuffer))
		if len(chunk) > 0 {
			consume(chunk)
			done += len(chunk)
			s.src.Discard(len(chunk))
		}
		if err != nil && done < s.total {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("IDX body of dimensions %v: truncated after %d of %d bytes: %w", s.dims, done, s.total, io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("IDX body of dimensions %v, after %d bytes: %w", s.dims, done, err)
		}
	}
	switch _, err := s.src.ReadByte(); {
	case err == nil:
		return fmt.Errorf("IDX body of dimensions %v: trailing data after %d bytes", s.dims, s.total)
	case err != io.EOF: // a gzip checksum error shows here, at the end of the stream
		return fmt.Errorf("IDX body of dimensions %v, after %d bytes: %w", s.dims, s.total, err)
	}
	return nil
}

func (s *idxStream) close() {
	if s.gz != nil {
		s.gz.Close()
	}
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
