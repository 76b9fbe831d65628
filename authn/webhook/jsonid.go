package webhook

// maxJSONDepth bounds the nesting topLevelID skips over.
const maxJSONDepth = 1000

// topLevelID returns the value of the first top-level "id" member of a JSON object, as Stripe
// sends its event id. It reads only as far as that member and does not validate the rest of
// the document (the body is already authenticated). An id that is not a string, contains an
// escape, or is not 1 to maxIDLen bytes of printable ASCII is not returned. It allocates only the returned string.
func topLevelID(b []byte) (string, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return "", false // '}' (no id) or garbage
		}
		kStart := i + 1
		end, escaped, ok := scanString(b, i)
		if !ok {
			return "", false
		}
		isID := !escaped && string(b[kStart:end-1]) == "id"
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return "", false
		}
		i = skipSpace(b, i+1)
		if isID {
			if i >= len(b) || b[i] != '"' {
				return "", false
			}
			end, escaped, ok := scanString(b, i)
			if !ok || escaped {
				return "", false
			}
			if id := string(b[i+1 : end-1]); validID(id) {
				return id, true
			}
			return "", false
		}
		if i, ok = skipValue(b, i); !ok {
			return "", false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			return "", false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the string starting at b[i] == '"' and returns the index just past its
// closing quote and whether it contains escapes.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped, true
		}
	}
	return 0, false, false
}

// skipValue skips one JSON value starting at b[i] and returns the index just past it. It
// tracks strings and nesting only; scalars end at the next ',', '}' or ']' of their level.
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			end, _, ok := scanString(b, i)
			if !ok {
				return 0, false
			}
			i = end
			if depth == 0 {
				return i, true
			}
			continue
		case '{', '[':
			if depth++; depth > maxJSONDepth {
				return 0, false
			}
		case '}', ']':
			if depth == 0 {
				return i, true
			}
			if depth--; depth == 0 {
				return i + 1, true
			}
		case ',':
			if depth == 0 {
				return i, true
			}
		}
		i++
	}
	return 0, false
}
