package conf

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Suggest returns the entry of valid that got was most likely meant to be,
// or "" when none is close enough to be worth saying. Case is ignored first
// (enum values are case-sensitive in ferry, and "cdab" for CDAB is the most
// common slip), then a small edit distance decides.
func Suggest(got string, valid []string) string {
	if got == "" || len(valid) == 0 {
		return ""
	}
	for _, v := range valid {
		if v != got && strings.EqualFold(v, got) {
			return v
		}
	}
	lg := strings.ToLower(got)
	best, bestD := "", 0
	for _, v := range valid {
		if v == got || v == "" {
			continue
		}
		d := distance(lg, strings.ToLower(v))
		if best == "" || d < bestD {
			best, bestD = v, d
		}
	}
	// An edit per four letters, one at least from three on: "adress" finds
	// address and "jsn" json, while "x" finds nothing (one letter is like
	// every other) and "drop-newest" not drop-oldest (another meaning).
	n := min(utf8.RuneCountInString(got), utf8.RuneCountInString(best))
	limit := n / 4
	if n >= 3 {
		limit = max(limit, 1)
	}
	if best == "" || bestD > limit {
		return ""
	}
	return best
}

// distance is the Levenshtein distance between a and b, counting an
// adjacent swap as one edit (Damerau's restricted form), in runes.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// enumMsg finds the two halves of a message that lists the valid values:
// the quoted value that was given, and the list after "one of" or "... are".
// Validate methods across the connectors write these forms (`%q is not one
// of A, B`, `unknown type %q; expected one of A, B`, `unknown module %q;
// sinks are a, b`), so one rewrite here gives all of them a hint without
// each Validate computing it.
var enumMsg = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"[^"]*?(?:\bone of|\bare) ([^;]+?)(?:;|$)`)

// listItem strips what a list entry may carry besides the value: "N (none)".
var listItem = regexp.MustCompile(`^([^\s(]+)`)

// withHint appends a "did you mean" to msg when it lists valid values and
// the quoted value is close to one of them. A message that has a hint
// already is left as it is.
func withHint(msg string) string {
	if strings.Contains(msg, "did you mean") {
		return msg
	}
	m := enumMsg.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	var valid []string
	for _, it := range strings.Split(m[2], ",") {
		it = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(it), "or "))
		if v := listItem.FindString(it); v != "" {
			valid = append(valid, v)
		}
	}
	if s := Suggest(m[1], valid); s != "" {
		return msg + "; did you mean " + s + "?"
	}
	return msg
}
