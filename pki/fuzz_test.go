package pki

import (
	"strings"
	"testing"
)

// FuzzParseRevoked: the revocation list is a file operators edit by hand. Whatever it holds,
// parsing must not panic, and every serial it accepts must be canonical hex that a
// certificate's Serial could produce.
func FuzzParseRevoked(f *testing.F) {
	for _, seed := range []string{
		"",
		"1a2b3c\n",
		"# comment only\n\n",
		"0xDEADbeef   # alice revoked 2026-11-27T12:00:00Z\n00ff\n",
		"zz\n",
		"-1\n",
		"+1\n",
		"1_000\n",
		strings.Repeat("f", 41) + "\n",
		"\r\n12\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		serials, err := parseRevoked(data)
		if err != nil {
			return
		}
		for s := range serials {
			if s == "" || len(s) > maxSerialHexDigits || strings.Trim(s, "0123456789abcdef") != "" {
				t.Fatalf("accepted non-canonical serial %q from %q", s, data)
			}
			if len(s) > 1 && s[0] == '0' {
				t.Fatalf("serial %q has a leading zero", s)
			}
		}
	})
}
