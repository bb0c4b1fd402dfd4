// Package deploy generates what runs slo-canary in production beside the
// binary: the Prometheus alerting and recording rules (one source, rendered
// both as a plain rules file and as a Prometheus Operator PrometheusRule) and
// the Grafana performance dashboard. The Kubernetes manifests, the Alertmanager
// route example and the runbooks live next to this file as data.
//
// The rendered files are checked in, so that kubectl, promtool and Grafana
// can use them without Go. After changing the generator, rewrite them with
//
//	go test ./deploy -run TestGenerated -update
//
// and the tests prove them: promtool checks and unit-tests every alert, the
// manifests decode strictly into the Kubernetes and Prometheus Operator types
// after a kustomize build, and an end-to-end test runs the built binary
// against the reference pipeline under a real Prometheus and Alertmanager.
package deploy
