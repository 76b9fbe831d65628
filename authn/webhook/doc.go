// Package webhook verifies the signatures of incoming webhook deliveries: Standard Webhooks,
// Stripe, GitHub, Slack, and a generic configurable HMAC-SHA256 scheme. It also signs
// deliveries the same way, for `wardenctl webhook sign` and for tests.
//
// A Verifier holds the configured sources. For each delivery it checks the size of the body,
// parses the scheme's headers, computes HMAC-SHA256 over the raw bytes with every active
// secret of the source (rotation: any one may match) and compares with hmac.Equal, checks the
// timestamp against a tolerance in both directions, and finally, when the source asks for it,
// records the event id in a ReplayStore so that a second delivery of the same event is refused
// as a duplicate. Only a delivery whose signature verified is recorded; if the store fails the
// delivery is refused with Reason Unavailable (fail closed).
//
//	v, err := webhook.New(webhook.Config{
//		Sources: []webhook.Source{{
//			Name:    "billing",
//			Scheme:  webhook.StandardWebhooks,
//			Secrets: []string{os.Getenv("BILLING_WEBHOOK_SECRET")}, // whsec_...
//			Replay:  true,
//		}},
//		Replay: webhook.NewMemoryReplay(webhook.MemoryReplayConfig{}),
//	})
//	if err != nil {
//		return err
//	}
//	res := v.Verify(ctx, "billing", webhook.Map(headers), body)
//	if !res.Valid {
//		log.Printf("webhook refused: %v", res.Reason)
//	}
//
// It is standard library only and knows nothing of gRPC, HTTP servers, YAML or Redis: headers
// arrive as a Headers lookup, secrets as strings already resolved by the config loader, and
// the Redis ReplayStore lives in authn/webhook/redisreplay.
package webhook
