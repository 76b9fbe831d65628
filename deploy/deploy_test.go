// Package deploy holds Warden's deployment files: the image (image/), Kubernetes manifests
// (kubernetes/), Prometheus alerting rules (prometheus/) and a Grafana dashboard (grafana/).
// Its tests check that the manifests agree with the image and with Warden's config.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wardenhq/warden/internal/config"
)

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec yaml.Node         `yaml:"spec"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	GRPC *struct {
		Port int `yaml:"port"`
	} `yaml:"grpc"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
			SecurityContext               struct {
				RunAsNonRoot bool `yaml:"runAsNonRoot"`
				RunAsUser    int  `yaml:"runAsUser"`
			} `yaml:"securityContext"`
			Containers []struct {
				Name  string   `yaml:"name"`
				Image string   `yaml:"image"`
				Args  []string `yaml:"args"`
				Ports []struct {
					Name          string `yaml:"name"`
					ContainerPort int    `yaml:"containerPort"`
				} `yaml:"ports"`
				ReadinessProbe probe `yaml:"readinessProbe"`
				LivenessProbe  probe `yaml:"livenessProbe"`
				StartupProbe   probe `yaml:"startupProbe"`
				Lifecycle      struct {
					PreStop struct {
						Sleep struct {
							Seconds int `yaml:"seconds"`
						} `yaml:"sleep"`
					} `yaml:"preStop"`
				} `yaml:"lifecycle"`
				Resources struct {
					Requests map[string]string `yaml:"requests"`
					Limits   map[string]string `yaml:"limits"`
				} `yaml:"resources"`
				VolumeMounts []struct {
					Name      string `yaml:"name"`
					MountPath string `yaml:"mountPath"`
				} `yaml:"volumeMounts"`
			} `yaml:"containers"`
			Volumes []struct {
				Name      string `yaml:"name"`
				ConfigMap struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

func decodeAll(t *testing.T, path string) map[string]object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]object{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("%s: an object without apiVersion, kind or name: %+v", path, o)
		}
		objs[o.Kind] = o
	}
	return objs
}

func decodeSpec(t *testing.T, o object, v any) {
	t.Helper()
	if err := o.Spec.Decode(v); err != nil {
		t.Fatalf("%s spec: %v", o.Kind, err)
	}
}

// containerfile returns the USER and the EXPOSEd ports of the image.
func containerfile(t *testing.T) (user string, ports []string) {
	t.Helper()
	f, err := os.Open("image/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 2 && fields[0] == "USER":
			user = fields[1]
		case len(fields) > 1 && fields[0] == "EXPOSE":
			for _, p := range fields[1:] {
				ports = append(ports, strings.TrimSuffix(p, "/tcp"))
			}
		}
	}
	return user, ports
}

func TestKubernetesManifests(t *testing.T) {
	objs := decodeAll(t, "kubernetes/warden.yaml")
	for _, kind := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "PodMonitor"} {
		if _, ok := objs[kind]; !ok {
			t.Fatalf("no %s in kubernetes/warden.yaml", kind)
		}
	}

	// The ConfigMap's config is a valid Warden config.
	cfgText, ok := objs["ConfigMap"].Data["warden.yaml"]
	if !ok {
		t.Fatal("the ConfigMap has no warden.yaml")
	}
	cfg, err := config.Parse("warden.yaml", []byte(cfgText), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("the ConfigMap's warden.yaml: %v", err)
	}

	var d deploymentSpec
	decodeSpec(t, objs["Deployment"], &d)
	pod := d.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	labels := d.Template.Metadata.Labels
	matches := func(sel map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if !matches(d.Selector.MatchLabels) {
		t.Errorf("Deployment selector %v does not match its pods %v", d.Selector.MatchLabels, labels)
	}
	if d.Replicas < 2 {
		t.Errorf("replicas %d: a PodDisruptionBudget needs at least 2", d.Replicas)
	}

	// Ports: the image's, named, and the ones Warden is told to listen on.
	user, exposed := containerfile(t)
	named := map[string]int{}
	for _, p := range c.Ports {
		named[p.Name] = p.ContainerPort
	}
	for _, name := range []string{"grpc", "admin"} {
		if _, ok := named[name]; !ok {
			t.Errorf("no container port named %s", name)
		}
	}
	for name, p := range named {
		if !slices.Contains(exposed, strconv.Itoa(p)) {
			t.Errorf("container port %s %d is not EXPOSEd by the image (%v)", name, p, exposed)
		}
	}
	argAfter := func(flag string) string {
		if i := slices.Index(c.Args, flag); i >= 0 && i+1 < len(c.Args) {
			return c.Args[i+1]
		}
		return ""
	}
	if got, want := argAfter("-grpc-addr"), "0.0.0.0:"+strconv.Itoa(named["grpc"]); got != want {
		t.Errorf("-grpc-addr %q, want %q", got, want)
	}
	if got, want := argAfter("-admin-addr"), "0.0.0.0:"+strconv.Itoa(named["admin"]); got != want {
		t.Errorf("-admin-addr %q, want %q", got, want)
	}
	cfgPath := argAfter("-config")
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap.Name == objs["ConfigMap"].Metadata.Name && cfgPath == m.MountPath+"/warden.yaml" {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("-config %q is not the ConfigMap's warden.yaml", cfgPath)
	}

	// Probes: readiness /readyz, liveness /healthz (admin), start on gRPC health.
	if p := c.ReadinessProbe.HTTPGet; p == nil || p.Path != "/readyz" || p.Port != "admin" {
		t.Errorf("readinessProbe: want httpGet /readyz on admin, got %+v", p)
	}
	if p := c.LivenessProbe.HTTPGet; p == nil || p.Path != "/healthz" || p.Port != "admin" {
		t.Errorf("livenessProbe: want httpGet /healthz on admin, got %+v", p)
	}
	if p := c.StartupProbe.GRPC; p == nil || p.Port != named["grpc"] {
		t.Errorf("startupProbe: want gRPC health on %d, got %+v", named["grpc"], p)
	}

	// Shutdown: preStop as long as server.drain; the grace period covers preStop, drain and
	// shutdown_timeout.
	pre := c.Lifecycle.PreStop.Sleep.Seconds
	drain, stop := int(cfg.Server.Drain.Seconds()), int(cfg.Server.ShutdownTimeout.Seconds())
	if pre != drain || pre == 0 {
		t.Errorf("preStop sleep %ds, want server.drain (%ds)", pre, drain)
	}
	if g := pod.TerminationGracePeriodSeconds; g < pre+drain+stop {
		t.Errorf("terminationGracePeriodSeconds %d < preStop %d + drain %d + shutdown_timeout %d", g, pre, drain, stop)
	}

	// Non-root, as the image's USER.
	if !pod.SecurityContext.RunAsNonRoot || user != strconv.Itoa(pod.SecurityContext.RunAsUser)+":"+strconv.Itoa(pod.SecurityContext.RunAsUser) {
		t.Errorf("securityContext runAsUser %d (nonroot %v), image USER %s", pod.SecurityContext.RunAsUser, pod.SecurityContext.RunAsNonRoot, user)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("resources: want cpu and memory requests and a memory limit, got %+v", c.Resources)
	}

	// Service, PDB and PodMonitor select the pods and name ports that exist.
	var svc struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	decodeSpec(t, objs["Service"], &svc)
	if !matches(svc.Selector) {
		t.Errorf("Service selector %v does not match the pods", svc.Selector)
	}
	for _, p := range svc.Ports {
		if _, ok := named[p.TargetPort]; !ok {
			t.Errorf("Service port %s targets %q, not a container port", p.Name, p.TargetPort)
		}
	}
	var pdb struct {
		MaxUnavailable int `yaml:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	}
	decodeSpec(t, objs["PodDisruptionBudget"], &pdb)
	if !matches(pdb.Selector.MatchLabels) || pdb.MaxUnavailable < 1 || pdb.MaxUnavailable >= d.Replicas {
		t.Errorf("PodDisruptionBudget: %+v", pdb)
	}
	var pm struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"podMetricsEndpoints"`
	}
	decodeSpec(t, objs["PodMonitor"], &pm)
	if !matches(pm.Selector.MatchLabels) || len(pm.Endpoints) != 1 || pm.Endpoints[0].Port != "admin" || pm.Endpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor: %+v", pm)
	}
}
