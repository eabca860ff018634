package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// stdin is what `tollgate key --hash` reads; a test sets its own.
var stdin io.Reader = os.Stdin

// keyPrefix begins the keys `tollgate key` makes, so that a secret scanner (and a
// reader) can tell one.
const keyPrefix = "sk-tg-"

const keyUsage = `Usage:
  tollgate key            make a client API key: print it and the auth.keys entry
                          with its SHA-256, to keep the key itself out of the config
  tollgate key --hash     read a key on stdin (one line; a trailing newline is not
                          part of it) and print its SHA-256 for auth.keys[].sha256
`

// keyCmd runs `tollgate key [--hash]`.
func keyCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tollgate key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hash := fs.Bool("hash", false, "print the SHA-256 of the key read on stdin")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, keyUsage)
			return 0
		}
		fmt.Fprint(stderr, keyUsage)
		return 2
	}
	if fs.NArg() > 0 {
		// Not quoted: it may well be a key, which would then be in a terminal's
		// scrollback or a CI log.
		fmt.Fprintln(stderr, "tollgate key: unexpected argument: give the key on stdin (tollgate key --hash), never on the command line")
		return 2
	}
	if *hash {
		key, err := readKey(stdin)
		if err != nil {
			fmt.Fprintln(stderr, "tollgate key --hash:", err)
			return 1
		}
		fmt.Fprintln(stdout, keyHash(key))
		return 0
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		fmt.Fprintln(stderr, "tollgate key:", err)
		return 1
	}
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	fmt.Fprintf(stdout, "key: %s\nauth.keys entry: - {name: NAME, sha256: %q}\n", key, keyHash(key))
	return 0
}

// readKey reads one key from r: its first line, without the line break (echo and
// most editors end a line with one, which `sha256sum` would hash with the key).
func readKey(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	key := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case key == "":
		return "", fmt.Errorf("no key on stdin")
	case strings.TrimSpace(key) != key:
		// The gateway takes the bearer token as sent: a key with spaces around it
		// is another key, and most likely a paste gone wrong.
		return "", fmt.Errorf("the key begins or ends with spaces: give it exactly")
	}
	return key, nil
}

// keyHash is the SHA-256 of key in hex, as auth.keys[].sha256 takes it.
func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}
