package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// discovery answers kubectl's API discovery for the kinds deploy/k8s uses, so that
// `kubectl create --dry-run=client` can map them without a cluster (it creates nothing).
func discovery(t *testing.T) *httptest.Server {
	res := func(name, kind string, namespaced bool) map[string]any {
		return map[string]any{"name": name, "singularName": "", "kind": kind, "namespaced": namespaced,
			"verbs": []string{"create", "get", "list", "delete"}}
	}
	pages := map[string]any{
		"/api": map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []any{map[string]string{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}}},
		"/apis": map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{map[string]any{"name": "apps",
			"versions":         []any{map[string]string{"groupVersion": "apps/v1", "version": "v1"}},
			"preferredVersion": map[string]string{"groupVersion": "apps/v1", "version": "v1"}}}},
		"/api/v1": map[string]any{"kind": "APIResourceList", "groupVersion": "v1", "resources": []any{
			res("namespaces", "Namespace", false), res("services", "Service", true), res("secrets", "Secret", true),
			res("configmaps", "ConfigMap", true)}},
		"/apis/apps/v1": map[string]any{"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": []any{
			res("deployments", "Deployment", true), res("statefulsets", "StatefulSet", true)}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The Kubernetes manifests parse as the objects docs/scale.md describes: kubectl's client-side
// dry run (Debian's kubernetes-client, installed by .ci/run) reads every one of them.
func TestKubernetesManifests(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl not found (Debian: apt-get install kubernetes-client; .ci/run installs it): %v", err)
	}
	api := discovery(t)
	dir := filepath.Join("..", "..", "deploy", "k8s")
	cmd := exec.Command(kubectl, "--server", api.URL, "create", "--dry-run=client", "--validate=false", "-f", dir, "-o", "json")
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+filepath.Join(t.TempDir(), "kubeconfig"), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("kubectl create --dry-run=client -f deploy/k8s: %v\n%s", err, stderr)
	}
	type object struct {
		Kind     string
		Metadata struct{ Name, Namespace string }
		Spec     struct {
			Replicas *int
			Template struct {
				Spec struct {
					Containers []struct{ Args []string }
					Volumes    []struct{ Secret *struct{ SecretName string } }
				}
			}
		}
		Items []json.RawMessage // a List (kubectl versions differ in how they print several objects)
	}
	var list struct{ Items []object }
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var o object
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("kubectl output: %v\n%s", err, out)
		}
		if o.Kind != "List" {
			list.Items = append(list.Items, o)
			continue
		}
		for _, raw := range o.Items {
			var it object
			if err := json.Unmarshal(raw, &it); err != nil {
				t.Fatal(err)
			}
			list.Items = append(list.Items, it)
		}
	}
	got := map[string]int{}
	for _, it := range list.Items {
		got[it.Kind+"/"+it.Metadata.Name]++
		if it.Kind != "Namespace" && it.Metadata.Namespace != "shoal" {
			t.Errorf("%s/%s outside the shoal namespace", it.Kind, it.Metadata.Name)
		}
		switch it.Kind + "/" + it.Metadata.Name {
		case "Deployment/shoal-coordinator":
			if it.Spec.Replicas == nil || *it.Spec.Replicas != 2 {
				t.Errorf("coordinator replicas %v, want 2 (one active, one standby)", fmt.Sprint(it.Spec.Replicas != nil && *it.Spec.Replicas == 2))
			}
			args := it.Spec.Template.Spec.Containers[0].Args
			if args[0] != "coordinator" || !slices.Contains(args, "--certs=/certs") || !hasPrefix(args, "--etcd=") || !hasPrefix(args, "--store=") {
				t.Errorf("coordinator args %v", args)
			}
		case "StatefulSet/shoal-edge":
			if args := it.Spec.Template.Spec.Containers[0].Args; args[0] != "edge" || !hasPrefix(args, "--advertise=") {
				t.Errorf("edge args %v", args)
			}
		}
		for _, v := range it.Spec.Template.Spec.Volumes {
			if v.Secret != nil && !strings.HasSuffix(v.Secret.SecretName, "-certs") {
				t.Errorf("%s mounts secret %s", it.Metadata.Name, v.Secret.SecretName)
			}
		}
	}
	for _, want := range []string{"Namespace/shoal", "ConfigMap/shoal-config", "Secret/shoal-store", "Deployment/shoal-coordinator",
		"StatefulSet/shoal-edge", "Service/shoal-edge", "Service/shoal-edge-internal"} {
		if got[want] != 1 {
			t.Errorf("%s: %d in deploy/k8s, want 1 (all: %v)", want, got[want], got)
		}
	}
}

func hasPrefix(args []string, p string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, p) })
}
