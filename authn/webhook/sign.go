package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"
)

// Sign returns the headers a sender of src's scheme sends with body: the event id (where the
// scheme has an id header), the timestamp t (truncated to seconds) and the signature. Schemes
// that carry several signatures (StandardWebhooks, Stripe) get one per secret, in order; the
// others are signed with the first secret. id is ignored by Stripe (its id is in the body) and
// Slack. src is validated as New would, including MinSecretLen.
//
// It is meant for `wardenctl webhook sign` and for tests, not for a hot path.
func Sign(src Source, id string, t time.Time, body []byte) (map[string]string, error) {
	s, err := compile(0, src)
	if err != nil {
		return nil, err
	}
	return s.sign(id, t, body)
}

func (s *source) sign(id string, t time.Time, body []byte) (map[string]string, error) {
	if len(id) > maxIDLen {
		return nil, errors.New("webhook: id longer than 256 bytes")
	}
	d := delivery{id: id, unix: t.Unix()}
	d.ts = formatTimestamp(d.unix)
	sums := make([][sha256.Size]byte, len(s.keys))
	for i, k := range s.keys {
		s.mac(k, &d, body, &sums[i])
	}
	h := map[string]string{}
	switch s.scheme {
	case StandardWebhooks:
		if id == "" {
			return nil, errors.New("webhook: standard webhooks needs an id")
		}
		sig := ""
		for i := range sums {
			if i > 0 {
				sig += " "
			}
			sig += "v1," + base64.StdEncoding.EncodeToString(sums[i][:])
		}
		h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"] = id, d.ts, sig
	case Stripe:
		sig := "t=" + d.ts
		for i := range sums {
			sig += ",v1=" + hex.EncodeToString(sums[i][:])
		}
		h["Stripe-Signature"] = sig
	case GitHub:
		h["X-Hub-Signature-256"] = "sha256=" + hex.EncodeToString(sums[0][:])
		if id != "" {
			h["X-GitHub-Delivery"] = id
		}
	case Slack:
		h["X-Slack-Signature"] = "v0=" + hex.EncodeToString(sums[0][:])
		h["X-Slack-Request-Timestamp"] = d.ts
	case Generic:
		enc := hex.EncodeToString(sums[0][:])
		if s.encoding == Base64 {
			enc = base64.StdEncoding.EncodeToString(sums[0][:])
		}
		h[s.sigHeader] = s.prefix + enc
		if s.tsHeader != "" {
			h[s.tsHeader] = d.ts
		}
		if s.idHeader != "" {
			if id == "" {
				return nil, errors.New("webhook: the source's id header needs an id")
			}
			h[s.idHeader] = id
		}
	}
	return h, nil
}

// The Sign* functions below sign one value with one secret and do not apply MinSecretLen.

// SignStandardWebhooks returns a webhook-signature value ("v1,<base64>") for a Standard
// Webhooks secret ("whsec_<base64>").
func SignStandardWebhooks(secret, id string, t time.Time, body []byte) (string, error) {
	k, err := DecodeSecret(StandardWebhooks, secret)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(id + "." + formatTimestamp(t.Unix()) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// SignStripe returns a Stripe-Signature value ("t=<unix>,v1=<hex>").
func SignStripe(secret string, t time.Time, body []byte) string {
	ts := formatTimestamp(t.Unix())
	return "t=" + ts + ",v1=" + hexMAC(secret, ts+".", body)
}

// SignGitHub returns an X-Hub-Signature-256 value ("sha256=<hex>").
func SignGitHub(secret string, body []byte) string {
	return "sha256=" + hexMAC(secret, "", body)
}

// SignSlack returns an X-Slack-Signature value ("v0=<hex>") for the request timestamp t.
func SignSlack(secret string, t time.Time, body []byte) string {
	return "v0=" + hexMAC(secret, "v0:"+formatTimestamp(t.Unix())+":", body)
}

func hexMAC(secret, prefix string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(prefix))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
