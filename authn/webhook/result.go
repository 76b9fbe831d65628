package webhook

import "time"

// Reason says why a delivery was refused, or OK when it was accepted. It is for audit logs,
// metrics and the API's reason field. The zero value is OK, as in package authn: Result.Valid,
// not the Reason, decides whether a delivery is accepted.
type Reason uint8

const (
	// OK: the signature verified, the timestamp is within tolerance, and the event was not
	// seen before (or replay protection is off).
	OK Reason = iota
	// MissingHeader: a header the scheme requires is absent (or ambiguous: present twice
	// with different values).
	MissingHeader
	// BadFormat: a header is present but malformed (bad timestamp, bad encoding, a
	// signature of the wrong length, the wrong prefix such as sha1= for GitHub).
	BadFormat
	// Stale: the signature verified but the timestamp is older than the tolerance.
	Stale
	// Future: the signature verified but the timestamp is further ahead than the tolerance.
	Future
	// NoMatchingSignature: no signature of the scheme's version matches any active secret.
	NoMatchingSignature
	// Duplicate: the signature verified but the event was already delivered.
	Duplicate
	// TooLarge: the body exceeds the source's MaxPayload; nothing was hashed.
	TooLarge
	// UnknownSource: no source of that name is configured.
	UnknownSource
	// Unavailable: the replay store failed, so no decision could be made. The delivery is
	// refused (fail closed); maps to the gRPC code UNAVAILABLE, not to a denial.
	Unavailable

	numReasons
)

var reasonNames = [numReasons]string{
	"ok", "missing_header", "bad_format", "stale", "future", "no_matching_signature",
	"duplicate", "too_large", "unknown_source", "unavailable",
}

// String returns the reason in snake_case, stable for metric labels and audit logs.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "invalid"
}

// Result is the verdict on one delivery. It is a plain value.
//
// EventID and Timestamp are set only once the signature has verified (Reason OK, Stale,
// Future, Duplicate or Unavailable), so they never carry attacker-chosen values.
type Result struct {
	// Valid is true only when the delivery should be processed: Reason is OK.
	Valid  bool
	Reason Reason
	// EventID is the delivery's id: webhook-id (Standard Webhooks), the body's top-level
	// "id" (Stripe, only when replay protection is on), X-GitHub-Delivery (GitHub), the id
	// header (generic). Empty when the scheme or the delivery has none.
	EventID string
	// Timestamp is the signed send time; zero when the scheme has none (GitHub).
	Timestamp time.Time
	// FirstSeen is true when replay protection recorded this delivery as the first of its
	// event; Duplicate is true when the event had already been recorded (Reason Duplicate:
	// a receiver may acknowledge it without processing it again). Both are false when
	// replay protection is off or was not reached.
	FirstSeen bool
	Duplicate bool
}
