package security

import (
	"errors"
	"strings"
)

// MaxPatternLen bounds a pattern so matching stays cheap; pool handles are
// at most a few dozen bytes in practice and identities are URIs.
const MaxPatternLen = 1024

// ValidatePattern checks a glob pattern: '*' matches any run of bytes
// (slashes included, unlike path.Match, because identities are URIs and
// pool handles are opaque), '?' matches one byte, '\' escapes the next
// byte. Everything else matches itself.
func ValidatePattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	if len(p) > MaxPatternLen {
		return errors.New("pattern longer than 1024 bytes")
	}
	// A run of backslashes at the end pairs up into escaped backslashes;
	// an odd one out escapes nothing.
	if n := len(p) - len(strings.TrimRight(p, `\`)); n%2 == 1 {
		return errors.New(`pattern ends with a lone '\'`)
	}
	return nil
}

// Match reports whether s matches the glob pattern p (see ValidatePattern).
// It runs in O(len(p)*len(s)) at worst, with no recursion, so a hostile
// pattern in a policy file cannot make it blow up.
func Match(p, s string) bool {
	// Classic greedy matcher with one backtrack point: on mismatch, retry
	// from the last '*' with one more byte swallowed.
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch c := p[pi]; c {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '\\':
				if pi+1 < len(p) && p[pi+1] == s[si] {
					pi += 2
					si++
					continue
				}
			default:
				if c == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
