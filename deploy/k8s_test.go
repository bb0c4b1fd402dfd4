package deploy

import (
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/slo-scout/slo-canary/config"
)

// manifests is a kustomize build decoded strictly into the real types.
type manifests struct {
	sa             *corev1.ServiceAccount
	configMap      *corev1.ConfigMap
	dashboard      *corev1.ConfigMap // the overlay's Grafana dashboard
	service        *corev1.Service
	statefulSet    *appsv1.StatefulSet
	pdb            *policyv1.PodDisruptionBudget
	netpol         *networkingv1.NetworkPolicy
	serviceMonitor *monitoringv1.ServiceMonitor
	rule           *monitoringv1.PrometheusRule
	namespaces     map[string]bool // of every object
}

// build renders a kustomization with krusty (the kustomize library) and
// decodes every object into its Kubernetes or Prometheus Operator type,
// unknown fields rejected. Any other kind, a Secret above all, fails.
func build(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{namespaces: map[string]bool{}}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		name := r.GetKind() + "/" + r.GetName()
		m.namespaces[r.GetNamespace()] = true
		into := map[string]any{
			"ServiceAccount":      &m.sa,
			"ConfigMap":           &m.configMap,
			"Service":             &m.service,
			"StatefulSet":         &m.statefulSet,
			"PodDisruptionBudget": &m.pdb,
			"NetworkPolicy":       &m.netpol,
			"ServiceMonitor":      &m.serviceMonitor,
			"PrometheusRule":      &m.rule,
		}[r.GetKind()]
		if r.GetKind() == "ConfigMap" && r.GetName() == dashboardConfigMap {
			into = &m.dashboard
		}
		if into == nil {
			t.Errorf("%s: unexpected kind in %s", name, dir)
			continue
		}
		ptr := reflect.ValueOf(into).Elem() // e.g. **appsv1.StatefulSet
		if !ptr.IsNil() {
			t.Errorf("%s: a second %s in %s", name, r.GetKind(), dir)
		}
		obj := reflect.New(ptr.Type().Elem())
		decodeStrict(t, name, y, obj.Interface())
		ptr.Set(obj)
	}
	for kind, got := range map[string]bool{
		"ServiceAccount": m.sa != nil, "ConfigMap": m.configMap != nil, "Service": m.service != nil,
		"StatefulSet": m.statefulSet != nil, "PodDisruptionBudget": m.pdb != nil, "NetworkPolicy": m.netpol != nil,
		"ServiceMonitor": m.serviceMonitor != nil, "PrometheusRule": m.rule != nil,
	} {
		if !got {
			t.Fatalf("%s: no %s", dir, kind)
		}
	}
	return m
}

// TestKustomizeBase: the base is namespace-agnostic.
func TestKustomizeBase(t *testing.T) {
	m := build(t, "base")
	if !reflect.DeepEqual(m.namespaces, map[string]bool{"": true}) {
		t.Errorf("base sets namespaces %v; it must leave them to the overlay", m.namespaces)
	}
	if m.dashboard != nil {
		t.Error("the base carries the dashboard; it belongs to the overlay")
	}
	checkManifests(t, m)
}

// TestKustomizeOverlay: the slo-scout overlay puts everything in slo-scout,
// adds the Grafana dashboard for the sidecar, and lets only the monitoring
// namespace reach the metrics port.
func TestKustomizeOverlay(t *testing.T) {
	m := build(t, "overlays/slo-scout")
	if !reflect.DeepEqual(m.namespaces, map[string]bool{"slo-scout": true}) {
		t.Errorf("overlay namespaces %v, want slo-scout only", m.namespaces)
	}
	if img := m.statefulSet.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(img, "ghcr.io/slo-scout/slo-canary:") || strings.HasSuffix(img, ":latest") {
		t.Errorf("overlay image %s: want a pinned tag", img)
	}
	checkManifests(t, m)

	// The dashboard: one ConfigMap, labelled for kube-prometheus-stack's
	// Grafana sidecar, holding the checked-in JSON byte for byte.
	d := m.dashboard
	if d == nil {
		t.Fatalf("no ConfigMap %s in the overlay", dashboardConfigMap)
	}
	if d.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v: want grafana_dashboard: \"1\"", d.Labels)
	}
	want, err := os.ReadFile(filepath.Join(repoRoot, DashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	key := path.Base(DashboardPath)
	if len(d.Data)+len(d.BinaryData) != 1 || d.Data[key] != string(want) {
		t.Errorf("dashboard ConfigMap holds %d keys; %s equal to %s: %v", len(d.Data)+len(d.BinaryData), key, DashboardPath, d.Data[key] == string(want))
	}

	// Ingress: from the monitoring namespace only, on the metrics port only.
	np := m.netpol.Spec
	if len(np.Ingress) != 1 || len(np.Ingress[0].From) != 1 {
		t.Fatalf("NetworkPolicy ingress %+v: want one rule from one peer", np.Ingress)
	}
	peer := np.Ingress[0].From[0]
	if peer.NamespaceSelector == nil || !reflect.DeepEqual(peer.NamespaceSelector.MatchLabels, map[string]string{"kubernetes.io/metadata.name": "monitoring"}) ||
		len(peer.NamespaceSelector.MatchExpressions) != 0 || peer.IPBlock != nil {
		t.Errorf("NetworkPolicy ingress peer %+v: want the namespace monitoring", peer)
	}
}

// dashboardConfigMap is the name of the dashboard's ConfigMap: fixed (no
// hash suffix), so that an update replaces it and the sidecar never sees an
// old version beside the new.
const dashboardConfigMap = "slo-canary-dashboard"

// secretEnv maps each environment variable the Deployment takes from the
// Secret to the configuration key it sets.
var secretEnv = map[string]string{
	"SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD": "observers.database.sql.password",
	"SLO_CANARY_KAFKA_SASL_PASSWORD":             "kafka.sasl.password",
	"SLO_CANARY_QUERIES_AUTH_JWT_SIGNING_KEY":    "queries.auth.jwt_signing_key",
	"SLO_CANARY_QUERIES_AUTH_TOKEN":              "queries.auth.token",
}

func checkManifests(t *testing.T, m *manifests) {
	d := m.statefulSet
	pod := d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2: one replica is a blind spot on every rollout and drain", d.Spec.Replicas)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("enableServiceLinks %v, want false: the Service slo-canary would put SLO_CANARY_SERVICE_HOST and the like in the config's namespace", pod.EnableServiceLinks)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken %v, want false: the canary never talks to the Kubernetes API", pod.AutomountServiceAccountToken)
	}
	// A StatefulSet replaces a pod, never runs two under one name: rolling
	// one at a time keeps the other replica measuring.
	if d.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType ||
		(d.Spec.UpdateStrategy.RollingUpdate != nil && d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable != nil &&
			d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() != 1) {
		t.Errorf("update strategy %+v, want RollingUpdate one pod at a time", d.Spec.UpdateStrategy)
	}
	if d.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q, want Parallel: the replicas need no start order", d.Spec.PodManagementPolicy)
	}
	spread := false
	for _, c := range pod.TopologySpreadConstraints {
		if c.TopologyKey == "kubernetes.io/hostname" && c.MaxSkew == 1 && c.LabelSelector != nil &&
			labels.SelectorFromSet(c.LabelSelector.MatchLabels).Matches(podLabels) {
			spread = true
		}
	}
	if !spread {
		t.Errorf("topologySpreadConstraints %+v: want the replicas spread across nodes", pod.TopologySpreadConstraints)
	}
	if sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels); !sel.Matches(podLabels) {
		t.Errorf("deployment selector %v does not match its pods %v", sel, podLabels)
	}
	if pod.ServiceAccountName != m.sa.Name {
		t.Errorf("service account %q, want %q", pod.ServiceAccountName, m.sa.Name)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 {
		t.Errorf("pod security context %+v: must run as a non-root user", pod.SecurityContext)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v: want a read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	for name, want := range map[string]map[corev1.ResourceName]string{
		"requests": {corev1.ResourceCPU: "50m", corev1.ResourceMemory: "64Mi"},
		"limits":   {corev1.ResourceCPU: "500m", corev1.ResourceMemory: "256Mi"},
	} {
		got := c.Resources.Requests
		if name == "limits" {
			got = c.Resources.Limits
		}
		for res, q := range want {
			if v, ok := got[res]; !ok || v.Cmp(resource.MustParse(q)) != 0 {
				t.Errorf("resources.%s.%s = %v, want %s", name, res, got[res], q)
			}
		}
	}

	// Ports and probes: 9464, /healthz for liveness, /readyz for readiness.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	portOf := func(what string, p intOrName) int32 {
		if p.name != "" {
			v, ok := ports[p.name]
			if !ok {
				t.Errorf("%s: names port %q, which the container does not have", what, p.name)
			}
			return v
		}
		return p.num
	}
	for _, pr := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("no %s probe over HTTP", pr.what)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path || portOf(pr.what+" probe", intOrNameOf(pr.probe.HTTPGet.Port.String())) != 9464 {
			t.Errorf("%s probe: %s on port %s, want %s on 9464", pr.what, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port.String(), pr.path)
		}
	}

	// Secrets: from the Secret slo-canary-secrets by reference, never inline;
	// and no Secret object in the build.
	got := map[string]bool{}
	for _, e := range c.Env {
		if key, ok := secretEnv[e.Name]; ok {
			got[e.Name] = true
			if config.EnvName(key) != e.Name {
				t.Errorf("%s does not set %s (its variable is %s)", e.Name, key, config.EnvName(key))
			}
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "slo-canary-secrets" {
				t.Errorf("%s must come from a secretKeyRef to slo-canary-secrets, got %+v", e.Name, e)
			}
			continue
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("%s comes from a Secret but sets no known secret key", e.Name)
		}
		upper := strings.ToUpper(e.Name)
		if strings.Contains(upper, "PASSWORD") || strings.Contains(upper, "TOKEN") || strings.Contains(upper, "SECRET") {
			t.Errorf("%s looks like a secret but is not from the Secret", e.Name)
		}
	}
	for name := range secretEnv {
		if !got[name] {
			t.Errorf("the StatefulSet does not pass %s from the Secret", name)
		}
	}

	// The config: the ConfigMap's file, mounted where --config points, loads
	// as the daemon would load it, with the database password from the Secret.
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	cfgVol := vols["config"]
	if cfgVol.ConfigMap == nil || cfgVol.ConfigMap.Name != m.configMap.Name {
		t.Fatalf("config volume %+v does not mount the ConfigMap %s", cfgVol, m.configMap.Name)
	}
	var cfgPath string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgPath = v
		}
	}
	file, ok := strings.CutPrefix(cfgPath, mounts["config"].MountPath+"/")
	if !ok || m.configMap.Data[file] == "" {
		t.Fatalf("--config=%s is not a file of the ConfigMap mounted at %s (keys %v)", cfgPath, mounts["config"].MountPath, m.configMap.Data)
	}
	local := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(local, []byte(m.configMap.Data[file]), 0o644); err != nil {
		t.Fatal(err)
	}
	for name := range secretEnv {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD", "from-the-secret")
	cfg, err := config.Load(local, nil)
	if err != nil {
		t.Fatalf("the ConfigMap's config does not load:\n%v", err)
	}
	if got := cfg.Observers["database"].SQL.Password.Reveal(); got != "from-the-secret" {
		t.Errorf("database password %q, want the Secret's", got)
	}
	if cfg.Canary.Instance == "" || strings.Contains(cfg.Canary.Instance, "$") {
		t.Errorf("canary.instance %q: must be a fixed name", cfg.Canary.Instance)
	}
	// Each replica's instance is its pod name: distinct, and stable across
	// restarts and rescheduling.
	instanceEnv := config.EnvName("canary.instance")
	fromPodName := false
	for _, e := range c.Env {
		if e.Name == instanceEnv {
			fromPodName = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
		}
	}
	if !fromPodName {
		t.Errorf("%s must come from the pod name (fieldRef metadata.name)", instanceEnv)
	}
	t.Setenv(instanceEnv, "slo-canary-1")
	if cfg, err := config.Load(local, nil); err != nil || cfg.Canary.Instance != "slo-canary-1" {
		t.Errorf("with %s from the pod name: instance %q, err %v", instanceEnv, cfg.Canary.Instance, err)
	}
	if !cfg.Coordination.Enabled {
		t.Error("coordination.enabled is off: the replicas would each run every scheduled burst")
	}
	if want := "/var/lib/slo-canary/state"; cfg.Canary.StateFile != want {
		t.Errorf("canary.state_file %q, want %s", cfg.Canary.StateFile, want)
	}
	state := vols["state"]
	if state.EmptyDir == nil || mounts["state"].MountPath != path.Dir(cfg.Canary.StateFile) || mounts["state"].ReadOnly {
		t.Errorf("the state file's directory must be a writable emptyDir mount: volume %+v, mount %+v", state, mounts["state"])
	}
	_, port, _ := strings.Cut(cfg.HTTP.Listen, ":")
	if p, err := strconv.Atoi(port); err != nil || int32(p) != ports["http-metrics"] {
		t.Errorf("http.listen %q does not serve the container port %d", cfg.HTTP.Listen, ports["http-metrics"])
	}

	// The Service selects the pods; the ServiceMonitor selects the Service
	// and scrapes its port; the NetworkPolicy lets the scrape in.
	if len(m.service.Spec.Selector) == 0 || !labels.SelectorFromSet(m.service.Spec.Selector).Matches(podLabels) {
		t.Errorf("service selector %v does not match the pods", m.service.Spec.Selector)
	}
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range m.service.Spec.Ports {
		svcPorts[p.Name] = p
		if portOf("service port "+p.Name, intOrNameOf(p.TargetPort.String())) != 9464 {
			t.Errorf("service port %s targets %s, not the canary's 9464", p.Name, p.TargetPort.String())
		}
	}
	smSel := m.serviceMonitor.Spec.Selector
	if !labels.SelectorFromSet(smSel.MatchLabels).Matches(labels.Set(m.service.Labels)) || len(smSel.MatchLabels) == 0 {
		t.Errorf("ServiceMonitor selector %v does not match the Service's labels %v", smSel.MatchLabels, m.service.Labels)
	}
	if len(m.serviceMonitor.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor has %d endpoints, want 1", len(m.serviceMonitor.Spec.Endpoints))
	}
	ep := m.serviceMonitor.Spec.Endpoints[0]
	if _, ok := svcPorts[ep.Port]; !ok || ep.Path != "/metrics" {
		t.Errorf("ServiceMonitor scrapes port %q path %q; the Service has %v", ep.Port, ep.Path, svcPorts)
	}
	if m.service.Name != DefaultParams().CanaryJob {
		t.Errorf("Service %s: the job label the alerts expect is %s", m.service.Name, DefaultParams().CanaryJob)
	}
	if !labels.SelectorFromSet(m.netpol.Spec.PodSelector.MatchLabels).Matches(podLabels) {
		t.Errorf("NetworkPolicy does not select the pods")
	}
	var ingressOK bool
	for _, in := range m.netpol.Spec.Ingress {
		for _, p := range in.Ports {
			if p.Port != nil && portOf("network policy", intOrNameOf(p.Port.String())) == 9464 {
				ingressOK = true
			}
		}
	}
	if !ingressOK {
		t.Error("NetworkPolicy does not let the scrape (port 9464) in")
	}
	if m.pdb.Spec.Selector == nil || !labels.SelectorFromSet(m.pdb.Spec.Selector.MatchLabels).Matches(podLabels) {
		t.Error("PodDisruptionBudget does not select the pods")
	}
	if mv := m.pdb.Spec.MinAvailable; mv == nil || mv.IntValue() != 1 || m.pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PodDisruptionBudget minAvailable %v, maxUnavailable %v: want minAvailable 1, one replica always measuring", mv, m.pdb.Spec.MaxUnavailable)
	}

	// The PrometheusRule is the generated one.
	var rf rulesFile
	data, err := RulesFile(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	decodeStrict(t, "rules", data, &rf)
	if !reflect.DeepEqual(m.rule.Spec.Groups, rf.Groups) {
		t.Error("the built PrometheusRule's groups differ from the rules file's")
	}
}

// intOrName is a port given by number or by name.
type intOrName struct {
	num  int32
	name string
}

func intOrNameOf(s string) intOrName {
	if n, err := strconv.Atoi(s); err == nil {
		return intOrName{num: int32(n)}
	}
	return intOrName{name: s}
}
