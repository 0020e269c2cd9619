package kubernetes_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/strata-metrics/strata/test/e2e"
)

type manifests struct {
	statefulSets []*appsv1.StatefulSet
	deployments  []*appsv1.Deployment
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	configMaps   map[string]*corev1.ConfigMap
	accounts     map[string]bool
}

// load decodes every document of every manifest strictly: an unknown or
// misspelt field is an error.
func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{},
		configMaps: map[string]*corev1.ConfigMap{}, accounts: map[string]bool{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var meta struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var obj any
			switch meta.Kind {
			case "StatefulSet":
				s := &appsv1.StatefulSet{}
				m.statefulSets, obj = append(m.statefulSets, s), s
			case "Deployment":
				d := &appsv1.Deployment{}
				m.deployments, obj = append(m.deployments, d), d
			case "Service":
				obj = &corev1.Service{}
			case "Secret":
				obj = &corev1.Secret{}
			case "ConfigMap":
				obj = &corev1.ConfigMap{}
			case "ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "ClusterRoleBinding":
				obj = &rbacv1.ClusterRoleBinding{}
			default:
				t.Fatalf("%s document %d: unexpected kind %q", f, i, meta.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, meta.Kind, err)
			}
			switch o := obj.(type) {
			case *corev1.Service:
				m.services[o.Name] = o
			case *corev1.Secret:
				m.secrets[o.Name] = o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.ServiceAccount:
				m.accounts[o.Name] = true
			}
		}
	}
	return m
}

type workload struct {
	name     string
	labels   map[string]string
	pod      corev1.PodSpec
	claims   []corev1.PersistentVolumeClaim
	headless string
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, s := range m.statefulSets {
		out = append(out, workload{s.Name, s.Spec.Template.Labels, s.Spec.Template.Spec, s.Spec.VolumeClaimTemplates, s.Spec.ServiceName})
	}
	for _, d := range m.deployments {
		out = append(out, workload{d.Name, d.Spec.Template.Labels, d.Spec.Template.Spec, nil, ""})
	}
	return out
}

func TestManifestsFitTogether(t *testing.T) {
	m := load(t)
	if len(m.statefulSets) != 3 || len(m.deployments) != 1 {
		t.Fatalf("want Prometheus, store and compactor StatefulSets and a querier Deployment, got %d and %d", len(m.statefulSets), len(m.deployments))
	}
	for _, w := range m.workloads() {
		volumes := map[string]corev1.Volume{}
		for _, v := range w.pod.Volumes {
			volumes[v.Name] = v
		}
		for _, c := range w.claims {
			volumes[c.Name] = corev1.Volume{Name: c.Name}
		}
		ports := map[string]int32{}
		for _, c := range w.pod.Containers {
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			for _, vm := range c.VolumeMounts {
				if _, ok := volumes[vm.Name]; !ok {
					t.Errorf("%s/%s mounts undefined volume %q", w.name, c.Name, vm.Name)
				}
			}
			for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if probe == nil || probe.HTTPGet == nil {
					t.Errorf("%s/%s lacks an HTTP readiness or liveness probe", w.name, c.Name)
					continue
				}
				if _, ok := ports[probe.HTTPGet.Port.StrVal]; !ok {
					t.Errorf("%s/%s probe uses unknown port %q", w.name, c.Name, probe.HTTPGet.Port.StrVal)
				}
			}
			if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/-/ready" {
				t.Errorf("%s/%s readiness probe path %s, want /-/ready", w.name, c.Name, c.ReadinessProbe.HTTPGet.Path)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s/%s has no CPU and memory requests", w.name, c.Name)
			}
		}
		for _, v := range w.pod.Volumes {
			if v.Secret != nil && m.secrets[v.Secret.SecretName] == nil {
				t.Errorf("%s uses undefined secret %q", w.name, v.Secret.SecretName)
			}
			if v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("%s uses undefined config map %q", w.name, v.ConfigMap.Name)
			}
		}
		if w.pod.ServiceAccountName != "" && !m.accounts[w.pod.ServiceAccountName] {
			t.Errorf("%s uses undefined service account %q", w.name, w.pod.ServiceAccountName)
		}
		if w.headless != "" {
			svc := m.services[w.headless]
			if svc == nil || svc.Spec.ClusterIP != "None" {
				t.Errorf("StatefulSet %s names %q, which is not a headless service here", w.name, w.headless)
			}
		}
		// Every service port targets a named port of the pods it selects.
		for _, svc := range m.services {
			if !selects(svc.Spec.Selector, w.labels) {
				continue
			}
			for _, p := range svc.Spec.Ports {
				if _, ok := ports[p.TargetPort.StrVal]; !ok {
					t.Errorf("service %s port %s targets %q, not a port of %s", svc.Name, p.Name, p.TargetPort.StrVal, w.name)
				}
			}
		}
	}
}

func selects(sel, lbls map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if lbls[k] != v {
			return false
		}
	}
	return true
}

var dnssrv = regexp.MustCompile(`^--endpoint=dnssrv\+_([a-z0-9-]+)\._tcp\.([a-z0-9-]+)\.`)

// TestQuerierFindsEveryStore: the querier's dnssrv+ endpoints name headless
// services with a port of that name, and together cover the sidecars and the
// store gateways.
func TestQuerierFindsEveryStore(t *testing.T) {
	m := load(t)
	found := map[string]bool{}
	for _, a := range m.deployments[0].Spec.Template.Spec.Containers[0].Args {
		sm := dnssrv.FindStringSubmatch(a)
		if sm == nil {
			continue
		}
		svc := m.services[sm[2]]
		if svc == nil || svc.Spec.ClusterIP != "None" {
			t.Fatalf("%s: no headless service %q", a, sm[2])
		}
		named := false
		for _, p := range svc.Spec.Ports {
			named = named || p.Name == sm[1]
		}
		if !named {
			t.Fatalf("%s: service %s has no port named %q", a, sm[2], sm[1])
		}
		found[sm[2]] = true
	}
	if !found["prometheus"] || !found["strata-store"] {
		t.Fatalf("querier endpoints cover %v; want the sidecars (prometheus) and the store gateways", found)
	}
}

// TestFlagsExist: every flag a manifest gives our binaries is one they have.
func TestFlagsExist(t *testing.T) {
	m := load(t)
	help := map[string]string{}
	for _, w := range m.workloads() {
		for _, c := range w.pod.Containers {
			if len(c.Command) != 1 || !strings.HasPrefix(c.Command[0], "/bin/") {
				continue
			}
			name := strings.TrimPrefix(c.Command[0], "/bin/")
			if pendingComponents[name] {
				continue
			}
			if _, ok := help[name]; !ok {
				out, err := exec.Command(e2e.StrataBinary(t, name), "--help-long").CombinedOutput()
				if err != nil {
					t.Fatalf("%s --help-long: %v\n%s", name, err, out)
				}
				help[name] = string(out)
			}
			for _, a := range c.Args {
				flag, _, _ := strings.Cut(a, "=")
				if !strings.Contains(help[name], flag+"=") && !strings.Contains(help[name], "--[no-]"+strings.TrimPrefix(flag, "--")) {
					t.Errorf("%s/%s: %s passes %s, which %s does not have", w.name, c.Name, name, flag, name)
				}
			}
		}
	}
	if len(help) == 0 {
		t.Fatal("checked no binary")
	}
	fmt.Println() // keep fmt for debugging output of help texts
}

// pendingComponents are binaries whose own flags have not landed yet; the
// manifests already use their Thanos flag names.
var pendingComponents = map[string]bool{}
