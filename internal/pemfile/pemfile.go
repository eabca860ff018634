// Package pemfile reads the PEM files a config names (CA bundles, certificates and their
// keys) with errors an operator can act on, and never reads more than a PEM file holds.
package pemfile

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
)

// MaxSize bounds one file: a CA bundle of every public root is about 250 KB.
const MaxSize = 4 << 20

// Read returns the contents of the regular file at path, at most MaxSize bytes. A
// device, FIFO or directory (ca_file: /dev/stdin) is refused instead of read forever.
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, problem(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, problem(err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New(path + " is not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, problem(err)
	}
	if len(b) > MaxSize {
		return nil, errors.New(path + " is larger than " + strconv.Itoa(MaxSize>>20) + " MiB")
	}
	return b, nil
}

// CertPool reads a PEM bundle of CA certificates. Every PEM block in it must be a
// certificate that parses: a bundle where one does not (cut short in a copy, OpenSSL's
// "TRUSTED CERTIFICATE", a key pasted in) is refused with the file and the block's line, where
// x509.CertPool.AppendCertsFromPEM would skip it and trust the others, leaving the
// upstreams that CA signed failing as unknown authority.
func CertPool(path string) (*x509.CertPool, error) {
	b, err := Read(path)
	if err != nil {
		return nil, errors.New("cannot be read: " + err.Error())
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		i := bytes.Index(rest, pemBegin)
		if i < 0 {
			break
		}
		line := 1 + bytes.Count(b[:len(b)-len(rest)+i], newline)
		block, next := pem.Decode(rest[i:])
		// pem.Decode goes on to the next block past one it cannot read: that one
		// is not complete either.
		if block == nil || bytes.Contains(rest[i+1:len(rest)-len(next)], pemBegin) {
			return nil, errors.New(path + ":" + strconv.Itoa(line) + ": PEM block is not complete")
		}
		rest = next
		if block.Type != "CERTIFICATE" {
			return nil, errors.New(path + ":" + strconv.Itoa(line) + ": PEM block is a " + strconv.Quote(block.Type) + ", not a CERTIFICATE")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, errors.New(path + ":" + strconv.Itoa(line) + ": certificate does not parse: " + strings.TrimPrefix(err.Error(), "x509: "))
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}

var (
	pemBegin = []byte("-----BEGIN ")
	newline  = []byte{'\n'}
)

// KeyPair reads a certificate (chain) and its private key. Its errors name the files
// and never quote the key.
func KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	c, err := Read(certFile)
	if err != nil {
		return tls.Certificate{}, errors.New("cannot be read: " + err.Error())
	}
	k, err := Read(keyFile)
	if err != nil {
		return tls.Certificate{}, errors.New("cannot be read: " + err.Error())
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		return tls.Certificate{}, errors.New(strings.TrimPrefix(err.Error(), "tls: "))
	}
	return pair, nil
}

// problem says what went wrong with a file without Go's operation prefix ("open").
func problem(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return errors.New(pe.Path + ": " + pe.Err.Error())
	}
	return err
}
