package main

import (
	"context"
	"testing"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// TestAPIKeyCacheMetrics: an unknown API key presented twice is a cache miss (a key-store
// lookup), then a hit (the negative entry), in warden_apikey_cache_total.
func TestAPIKeyCacheMetrics(t *testing.T) {
	r := start(t, exampleEnv, "-config", "../../examples/warden.yaml")
	c := wardenv1.NewWardenServiceClient(dial(t, r.GRPC))
	key, _, err := authn.NewAPIKey(authn.EnvLive)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		resp, err := c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET",
			Path: "/v1/users/alice/orders", Headers: map[string]string{"x-api-key": key}}})
		if err != nil || resp.Allowed {
			t.Fatalf("unknown key: %v %v", resp, err)
		}
	}
	_, body := httpGet(t, "http://"+r.Admin+"/metrics")
	for _, result := range []string{"hit", "miss"} {
		if v := metricLine(body, "warden_apikey_cache_total", `result="`+result+`"`); v != "1" {
			t.Errorf("warden_apikey_cache_total{result=%q} = %q, want 1", result, v)
		}
	}
}
