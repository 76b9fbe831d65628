package envoyexample

import (
	"encoding/json"
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/wardenhq/warden/limiter/rlconfig"
)

// TestEnvoyYAML decodes envoy.yaml strictly into Envoy's Bootstrap (YAML to JSON, then
// protojson, with every typed_config resolvable because the filter packages are imported),
// runs Envoy's proto validation rules, and checks the wiring: ext_authz and ratelimit both
// call the warden cluster over gRPC, with short timeouts, and the cluster speaks HTTP/2.
func TestEnvoyYAML(t *testing.T) {
	data, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("envoy.yaml is not a valid Bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("envoy.yaml breaks Envoy's validation rules: %v", err)
	}

	var hcm hcmv3.HttpConnectionManager
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var authz extauthzv3.ExtAuthz
	var rl ratelimitv3.RateLimit
	for _, f := range hcm.GetHttpFilters() {
		switch f.GetName() {
		case "envoy.filters.http.ext_authz":
			if err := f.GetTypedConfig().UnmarshalTo(&authz); err != nil {
				t.Fatal(err)
			}
		case "envoy.filters.http.ratelimit":
			if err := f.GetTypedConfig().UnmarshalTo(&rl); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := authz.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != "warden" {
		t.Errorf("ext_authz cluster: got %q, want warden", got)
	}
	if d := authz.GetGrpcService().GetTimeout().AsDuration(); d <= 0 || d.Milliseconds() > 200 {
		t.Errorf("ext_authz timeout: got %v", d)
	}
	if got := rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != "warden" || rl.GetDomain() != "edge" {
		t.Errorf("ratelimit: cluster %q, domain %q; want warden, edge", got, rl.GetDomain())
	}
	var warden bool
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == "warden" {
			_, warden = c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		}
	}
	if !warden {
		t.Error("the warden cluster does not set HTTP/2 protocol options")
	}

	// The ratelimit files the example's warden.yaml points at load.
	if _, err := rlconfig.Load("ratelimit"); err != nil {
		t.Errorf("ratelimit/: %v", err)
	}
}
