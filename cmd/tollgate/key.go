package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tollgate/tollgate/gateway"
)

// stdin is what `tollgate key --hash` reads; a test sets its own.
var stdin io.Reader = os.Stdin

// keyPrefix begins the keys `tollgate key` makes, so that a secret scanner (and a
// reader) can tell one.
const keyPrefix = "sk-tg-"

const keyUsage = `Usage:
  tollgate key            make a client API key: print it and the auth.keys entry
                          with its SHA-256, to keep the key itself out of the config
  tollgate key --expires-at 2026-12-31T23:59:59Z
                          the same, the entry with that expires_at (RFC 3339, with
                          its zone): the key is refused from that instant on
  tollgate key --hash     read a key on stdin (one line; a trailing newline is not
                          part of it) and print its SHA-256 for auth.keys[].sha256
`

// keyCmd runs `tollgate key [--expires-at T | --hash]`. Its arguments are read by
// hand rather than with the flag package, whose errors quote what they refuse: a key
// typed as a flag's value (--hash=sk-…) would end up in a terminal's scrollback or a
// CI log.
func keyCmd(args []string, stdout, stderr io.Writer) int {
	hash := false
	expires, ok := expiresArg(args)
	switch {
	case ok:
		switch at, err := gateway.ParseExpiresAt(expires); {
		case err != nil:
			fmt.Fprintln(stderr, "tollgate key: --expires-at", err)
			return 2
		case !at.After(time.Now()):
			fmt.Fprintln(stderr, "tollgate key: --expires-at is already past: the key would be refused from the start")
			return 2
		}
	case len(args) == 0:
	case len(args) == 1 && (args[0] == "--hash" || args[0] == "-hash"):
		hash = true
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help"):
		fmt.Fprint(stdout, keyUsage)
		return 0
	case len(args) == 1 && (args[0] == "--expires-at" || args[0] == "-expires-at"):
		fmt.Fprintln(stderr, "tollgate key: --expires-at needs a value: the instant the key stops working, with its zone, e.g. 2026-12-31T23:59:59Z (RFC 3339)")
		return 2
	default:
		// Not quoted: it may well be a key.
		fmt.Fprintln(stderr, "tollgate key: unexpected argument: give the key on stdin (tollgate key --hash), never on the command line")
		fmt.Fprint(stderr, keyUsage)
		return 2
	}
	if hash {
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
	if expires != "" {
		fmt.Fprintf(stdout, "key: %s\nauth.keys entry: - {name: NAME, sha256: %q, expires_at: %q}\n", key, keyHash(key), expires)
		return 0
	}
	fmt.Fprintf(stdout, "key: %s\nauth.keys entry: - {name: NAME, sha256: %q}\n", key, keyHash(key))
	return 0
}

// expiresArg is the value of `--expires-at T` (or `--expires-at=T`, one dash or two)
// when args are that alone.
func expiresArg(args []string) (string, bool) {
	for _, name := range []string{"--expires-at", "-expires-at"} {
		switch {
		case len(args) == 2 && args[0] == name:
			return args[1], true
		case len(args) == 1 && strings.HasPrefix(args[0], name+"="):
			return args[0][len(name)+1:], true
		}
	}
	return "", false
}

// maxKeyLine is the longest key read: far above any key, and a line longer than it is
// no key (a wrong file) rather than one to hash in part.
const maxKeyLine = 64 << 10

// readKey reads one key from r: its first line, without the line break (echo and
// most editors end a line with one, which `sha256sum` would hash with the key). What
// no client can send as a bearer token (control bytes such as NUL, a byte-order mark,
// UTF-16 as PowerShell's > writes it) is refused, never quoted.
func readKey(r io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxKeyLine+2), maxKeyLine+2).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	if err == io.EOF && len(line) > maxKeyLine {
		return "", fmt.Errorf("the first line is longer than %d KiB: no key is", maxKeyLine>>10)
	}
	key := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case key == "":
		return "", fmt.Errorf("no key on stdin")
	case len(key) > maxKeyLine:
		return "", fmt.Errorf("the first line is longer than %d KiB: no key is", maxKeyLine>>10)
	case strings.HasPrefix(key, "\xef\xbb\xbf") || strings.HasPrefix(key, "\xff\xfe") || strings.HasPrefix(key, "\xfe\xff"):
		return "", fmt.Errorf("the key begins with a byte-order mark: save it as plain text (UTF-8 without BOM, or ASCII)")
	case strings.TrimSpace(key) != key:
		// The gateway takes the bearer token as sent: a key with spaces around it
		// is another key, and most likely a paste gone wrong.
		return "", fmt.Errorf("the key begins or ends with spaces: give it exactly")
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", fmt.Errorf("the key holds a control byte (such as NUL), which no client can send in a header")
		}
	}
	return key, nil
}

// keyHash is the SHA-256 of key in hex, as auth.keys[].sha256 takes it.
func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}
