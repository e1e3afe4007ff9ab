//! Cases from the peers' public bug reports (Argo CD, Flux, Helm charts run
//! under them, kubectl), each written the way its reporter had it: the
//! manifest as YAML in git, the live object as the API server returns it
//! (server defaults, managedFields, canonical quantities). Each row says what
//! `kubectl apply` of the manifest would change, and the probe's own
//! manifest reader, normalizer and comparison must say the same.

use serde_json::{json, Value};

use super::manifest::parse_source;
use super::*;
use crate::probe::{parse_fields, ProbeCommon};
use std::path::PathBuf;

/// The probe's lines for one manifest document against one live object.
fn lines(manifest_yaml: &str, live: Value) -> Vec<String> {
    let loaded = parse_source("case.yaml", manifest_yaml, false);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let manifest = &loaded.objects[0];
    let common = ProbeCommon {
        name: "k".into(),
        layer: "kubernetes".into(),
        repo: "r".into(),
        path: PathBuf::from("deploy"),
        config_dir: PathBuf::from("/etc/driftwatch"),
        ..Default::default()
    };
    let config: KubernetesConfig = parse_fields(toml::Table::new()).unwrap();
    let probe = KubernetesProbe::new(&common, config).unwrap();
    let root = schema::builtin().root(manifest.api_version(), manifest.kind());
    probe
        .differences(manifest, "default", live, root, &Default::default())
        .into_iter()
        .map(|(line, _)| line)
        .collect()
}

/// The live metadata a real API server adds to every object.
fn meta(name: &str, extra: Value) -> Value {
    let mut m = json!({
        "name": name, "namespace": "default", "uid": "0b6f5c1e-7d1e-4c39-9d43-1a2b3c4d5e6f",
        "resourceVersion": "4711", "generation": 1,
        "creationTimestamp": "2026-11-29T08:00:00Z",
        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update",
            "apiVersion": "v1", "time": "2026-11-29T08:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {}}}]
    });
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    m
}

struct Case {
    /// The public report the case comes from.
    source: &'static str,
    manifest: &'static str,
    live: Value,
    /// What `kubectl apply` would change, as the probe's lines.
    drift: &'static [&'static str],
}

fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let got = lines(case.manifest, case.live);
        if got != case.drift {
            failures.push(format!(
                "{}\n  want {:?}\n  got  {:?}",
                case.source, case.drift, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn deployment_live(spec_template_spec: Value, extra_spec: Value) -> Value {
    let mut spec = json!({
        "replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                     "spec": spec_template_spec}
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra_spec.as_object().cloned().unwrap_or_default());
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web", json!({})),
           "spec": spec, "status": {"observedGeneration": 1, "replicas": 1}})
}

fn pod_spec_live(container: Value) -> Value {
    let mut c = json!({"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
        "resources": {}, "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"});
    c.as_object_mut()
        .unwrap()
        .extend(container.as_object().cloned().unwrap_or_default());
    json!({"containers": [c], "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
           "schedulerName": "default-scheduler", "securityContext": {},
           "terminationGracePeriodSeconds": 30})
}

/// Quantities: the API server stores them canonically, so git's spelling
/// and the live one compare by value wherever the API's type is a
/// quantity, and by text everywhere else.
#[test]
fn quantities_compare_by_value_where_the_api_types_them() {
    check(vec![
        Case {
            source: "https://github.com/argoproj/argo-cd/issues/21135 (1000M -> 1G, 1000m -> 1)",
            manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        resources:\n          requests:\n            memory: 1000M\n            cpu: 1000m\n          limits:\n            memory: 1000M\n",
            live: deployment_live(
                pod_spec_live(json!({"resources": {"requests": {"memory": "1G", "cpu": "1"},
                                                   "limits": {"memory": "1G"}}})),
                json!({}),
            ),
            drift: &[],
        },
        Case {
            source: "https://github.com/lsst-sqre/phalanx/pull/4383 (memory in Gi, argo-cd#16400)",
            manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        resources:\n          limits:\n            memory: 1.5Gi\n            cpu: 0.5\n",
            live: deployment_live(
                pod_spec_live(json!({"resources": {"limits": {"memory": "1536Mi", "cpu": "500m"},
                                                   "requests": {"memory": "1536Mi", "cpu": "500m"}}})),
                json!({}),
            ),
            drift: &[],
        },
        Case {
            source: "https://github.com/argoproj/argo-cd/issues/14035 (HPA averageValue: 10 unquoted; live adds nothing git names)",
            manifest: "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 1\n  maxReplicas: 5\n  metrics:\n  - type: Object\n    object:\n      describedObject: {apiVersion: v1, kind: Service, name: rabbitmq}\n      metric:\n        name: rabbitmq_celery_queue_unprocessed_messages\n      target:\n        type: AverageValue\n        averageValue: 10\n",
            live: json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": meta("web", json!({})),
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1, "maxReplicas": 5,
                    "metrics": [{"type": "Object", "object": {
                        "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "rabbitmq"},
                        "metric": {"name": "rabbitmq_celery_queue_unprocessed_messages"},
                        "target": {"type": "AverageValue", "averageValue": "10"}}}]}}),
            drift: &[],
        },
        Case {
            source: "https://github.com/nasa/harmony/pull/130 (HPA averageValue 10,000m: stored as 10)",
            manifest: "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 5\n  metrics:\n  - type: Pods\n    pods:\n      metric: {name: num_ready_work_items}\n      target: {type: AverageValue, averageValue: 10000m}\n  behavior:\n    scaleUp:\n      tolerance: 0.05\n",
            live: json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": meta("web", json!({})),
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1, "maxReplicas": 5,
                    "metrics": [{"type": "Pods", "pods": {"metric": {"name": "num_ready_work_items"},
                        "target": {"type": "AverageValue", "averageValue": "10"}}}],
                    "behavior": {"scaleUp": {"tolerance": "50m", "stabilizationWindowSeconds": 0,
                        "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]}}}}),
            drift: &[],
        },
        Case {
            source: "sibling: the HPA target really changed live (10 -> 20) is drift",
            manifest: "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 5\n  metrics:\n  - type: Pods\n    pods:\n      metric: {name: num_ready_work_items}\n      target: {type: AverageValue, averageValue: 10000m}\n",
            live: json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": meta("web", json!({})),
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1, "maxReplicas": 5,
                    "metrics": [{"type": "Pods", "pods": {"metric": {"name": "num_ready_work_items"},
                        "target": {"type": "AverageValue", "averageValue": "20"}}}]}}),
            drift: &[r#"spec.metrics: want [{"pods":{"metric":{"name":"num_ready_work_items"},"target":{"averageValue":"10000m","type":"AverageValue"}},"type":"Pods"}], live [{"pods":{"metric":{"name":"num_ready_work_items"},"target":{"averageValue":"20","type":"AverageValue"}},"type":"Pods"}]"#],
        },
        Case {
            source: "sibling: emptyDir sizeLimit 0.5Gi is stored as 512Mi; a downward-API divisor 1000m as 1",
            manifest: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n    env:\n    - name: CPU\n      valueFrom:\n        resourceFieldRef: {resource: limits.cpu, divisor: 1000m}\n  volumes:\n  - name: scratch\n    emptyDir: {sizeLimit: 0.5Gi}\n",
            live: json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web", json!({})),
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                    "env": [{"name": "CPU", "valueFrom": {"resourceFieldRef":
                        {"containerName": "web", "resource": "limits.cpu", "divisor": "1"}}}]}],
                    "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "512Mi"}}]}}),
            drift: &[],
        },
        Case {
            source: "sibling: an env value is a string, not a quantity: \"1000m\" is not \"1\"",
            manifest: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n    env:\n    - {name: CPU, value: 1000m}\n",
            live: json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web", json!({})),
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                    "env": [{"name": "CPU", "value": "1"}]}]}}),
            drift: &[r#"spec.containers[name=web].env[name=CPU].value: "1000m" → "1""#],
        },
        Case {
            source: "https://github.com/shepherdjerred/monorepo/pull/1620 sibling in the built-in API: ResourceQuota hard 12000m stored as 12",
            manifest: "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: team\nspec:\n  hard:\n    requests.cpu: 12000m\n    requests.storage: 1000Gi\n    pods: \"10\"\n",
            live: json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("team", json!({})),
                "spec": {"hard": {"requests.cpu": "12", "requests.storage": "1000Gi", "pods": "10"}},
                "status": {"hard": {"requests.cpu": "12"}, "used": {"requests.cpu": "0"}}}),
            drift: &[],
        },
        Case {
            source: "sibling: LimitRange default/min/max and a PVC's storage request",
            manifest: "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 0.5, memory: 512Mi}\n    defaultRequest: {cpu: 100m}\n    max: {cpu: \"2\"}\n    min: {memory: 0.0625Gi}\n",
            live: json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": meta("limits", json!({})),
                "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"},
                    "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]}}),
            drift: &[],
        },
        Case {
            source: "sibling: CSIStorageCapacity's own capacity field",
            manifest: "apiVersion: storage.k8s.io/v1\nkind: CSIStorageCapacity\nmetadata:\n  name: cap\nstorageClassName: fast\ncapacity: 1.5Ti\nmaximumVolumeSize: 1024Gi\n",
            live: json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity",
                "metadata": meta("cap", json!({})), "storageClassName": "fast",
                "capacity": "1536Gi", "maximumVolumeSize": "1Ti"}),
            drift: &[],
        },
    ]);
}

/// Nulls and empty values in git, and fields the server fills in: apply
/// leaves alone whatever git does not set, so none of it is drift.
#[test]
fn nulls_empties_and_server_filled_fields_are_not_drift() {
    check(vec![
        Case {
            source: "kubectl create deployment web --image=nginx:1.27 --dry-run=client -o yaml (creationTimestamp: null, strategy: {}, resources: {}, status: {})",
            manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  creationTimestamp: null\n  labels:\n    app: web\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: web\n  strategy: {}\n  template:\n    metadata:\n      creationTimestamp: null\n      labels:\n        app: web\n    spec:\n      containers:\n      - image: nginx:1.27\n        name: nginx\n        resources: {}\nstatus: {}\n",
            live: {
                let mut live = deployment_live(pod_spec_live(json!({"name": "nginx"})), json!({}));
                live["metadata"]["labels"] = json!({"app": "web"});
                live["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
                live
            },
            drift: &[],
        },
        Case {
            source: "kubectl create service clusterip web --tcp=80:8080 --dry-run=client -o yaml (server fills clusterIP(s), ipFamilies, sessionAffinity)",
            manifest: "apiVersion: v1\nkind: Service\nmetadata:\n  creationTimestamp: null\n  labels:\n    app: web\n  name: web\nspec:\n  ports:\n  - name: 80-8080\n    port: 80\n    protocol: TCP\n    targetPort: 8080\n  selector:\n    app: web\n  type: ClusterIP\nstatus:\n  loadBalancer: {}\n",
            live: json!({"apiVersion": "v1", "kind": "Service",
                "metadata": meta("web", json!({"labels": {"app": "web"}})),
                "spec": {"clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"],
                    "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
                    "ipFamilyPolicy": "SingleStack",
                    "ports": [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}],
                    "selector": {"app": "web"}, "sessionAffinity": "None", "type": "ClusterIP"},
                "status": {"loadBalancer": {}}}),
            drift: &[],
        },
        Case {
            source: "sibling: the same Service switched to NodePort live is drift",
            manifest: "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - {name: 80-8080, port: 80, protocol: TCP, targetPort: 8080}\n  selector: {app: web}\n  type: ClusterIP\n",
            live: json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("web", json!({})),
                "spec": {"clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"],
                    "ports": [{"name": "80-8080", "nodePort": 31234, "port": 80, "protocol": "TCP", "targetPort": 8080}],
                    "selector": {"app": "web"}, "type": "NodePort"}}),
            drift: &[r#"spec.type: "ClusterIP" → "NodePort""#],
        },
        Case {
            source: "https://github.com/traefik/traefik-helm-chart/issues/1019 (annotations: null in an IngressRoute)",
            manifest: "apiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata:\n  name: dashboard\n  annotations: null\nspec:\n  entryPoints: [traefik]\n  routes:\n  - match: PathPrefix(`/dashboard`)\n    kind: Rule\n    services:\n    - {name: api@internal, kind: TraefikService}\n",
            live: json!({"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
                "metadata": meta("dashboard", json!({})),
                "spec": {"entryPoints": ["traefik"], "routes": [{"match": "PathPrefix(`/dashboard`)",
                    "kind": "Rule", "services": [{"name": "api@internal", "kind": "TraefikService"}]}]}}),
            drift: &[],
        },
        Case {
            source: "https://github.com/argoproj/argo-cd/issues/12033 (groupNames: null in git, [] live)",
            manifest: "apiVersion: authorization.openshift.io/v1\nkind: RoleBinding\nmetadata:\n  name: view\ngroupNames: null\nroleRef: {name: view}\nsubjects:\n- {kind: Group, name: A}\n- {kind: User, name: B}\n",
            live: json!({"apiVersion": "authorization.openshift.io/v1", "kind": "RoleBinding",
                "metadata": meta("view", json!({})), "groupNames": [], "userNames": ["B"],
                "roleRef": {"name": "view"},
                "subjects": [{"kind": "Group", "name": "A"}, {"kind": "User", "name": "B"}]}),
            drift: &[],
        },
        Case {
            source: "https://github.com/argoproj/argo-cd/issues/12033 (subjects reordered live: an atomic list, apply puts git's order back)",
            manifest: "apiVersion: authorization.openshift.io/v1\nkind: RoleBinding\nmetadata:\n  name: view\nroleRef: {name: view}\nsubjects:\n- {kind: Group, name: A}\n- {kind: User, name: B}\n",
            live: json!({"apiVersion": "authorization.openshift.io/v1", "kind": "RoleBinding",
                "metadata": meta("view", json!({})), "roleRef": {"name": "view"},
                "subjects": [{"kind": "User", "name": "B"}, {"kind": "Group", "name": "A"}]}),
            drift: &[r#"subjects: want [{"kind":"Group","name":"A"},{"kind":"User","name":"B"}], live [{"kind":"User","name":"B"},{"kind":"Group","name":"A"}]"#],
        },
        Case {
            source: "https://github.com/GreptimeTeam/helm-charts/pull/362 (resources: {requests: {}, limits: {}})",
            manifest: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n    resources:\n      requests: {}\n      limits: {}\n",
            live: json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web", json!({})),
                "spec": pod_spec_live(json!({}))}),
            drift: &[],
        },
        Case {
            source: "https://github.com/fluxcd/helm-controller/issues/643 (a webhook adds prometheus-operator-validated to PrometheusRule)",
            manifest: "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: etcd\nspec:\n  groups:\n  - name: etcd\n    rules:\n    - alert: etcdDown\n      expr: up{job=\"etcd\"} == 0\n",
            live: json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": meta("etcd", json!({"annotations": {"prometheus-operator-validated": "true"}})),
                "spec": {"groups": [{"name": "etcd", "rules": [{"alert": "etcdDown", "expr": "up{job=\"etcd\"} == 0"}]}]}}),
            drift: &[],
        },
        Case {
            source: "https://github.com/fluxcd/kustomize-controller/pull/1627 test 1 (HPA owns replicas; git leaves it out)",
            manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: web, image: nginx:1.27}\n",
            live: deployment_live(pod_spec_live(json!({})), json!({"replicas": 5})),
            drift: &[],
        },
        Case {
            source: "https://github.com/argoproj/argo-cd/issues/4661 (a label, a volumeMount and a volume added live by kubectl edit: apply keeps what git never set)",
            manifest: "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: agent\n        image: agent:1\n        volumeMounts:\n        - {name: data, mountPath: /data}\n      volumes:\n      - name: data\n        emptyDir: {}\n",
            live: json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": meta("agent", json!({"labels": {"edited": "by-hand"}})),
                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                    "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                        "containers": [{"name": "agent", "image": "agent:1", "volumeMounts": [
                            {"name": "data", "mountPath": "/data"}, {"name": "extra", "mountPath": "/extra"}]}],
                        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "extra", "emptyDir": {}}]}},
                    "updateStrategy": {"type": "RollingUpdate"}}}),
            drift: &[],
        },
        Case {
            source: "sibling of argo-cd#4661: the mount git declares, pointed at another volume live, is drift (readOnly, which git never set, is not)",
            manifest: "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: agent\n        image: agent:1\n        volumeMounts:\n        - {name: data, mountPath: /data}\n",
            live: json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("agent", json!({})),
                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                    "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                        "containers": [{"name": "agent", "image": "agent:1", "volumeMounts": [
                            {"name": "scratch", "mountPath": "/data", "readOnly": true}]}]}}}}),
            drift: &[r#"spec.template.spec.containers[name=agent].volumeMounts[mountPath=/data].name: "data" → "scratch""#],
        },
        Case {
            source: "sibling: with hostNetwork the server sets hostPort from containerPort",
            manifest: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  hostNetwork: true\n  containers:\n  - name: web\n    image: nginx:1.27\n    ports:\n    - containerPort: 8080\n",
            live: {
                let mut live = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web", json!({})),
                    "spec": pod_spec_live(json!({"ports": [{"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}]}))});
                live["spec"]["hostNetwork"] = json!(true);
                live
            },
            drift: &[],
        },
    ]);
}

/// Numbers: the API's integers are 64-bit; two that differ must never
/// compare equal through a float.
#[test]
fn big_integers_compare_exactly() {
    check(vec![
        Case {
            source: "sibling of the YAML-reading kind (issue 10): int64 fields past 2^53",
            manifest: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  activeDeadlineSeconds: 9007199254740993\n  containers:\n  - {name: web, image: nginx:1.27}\n",
            live: json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web", json!({})),
                "spec": {"activeDeadlineSeconds": 9007199254740992_i64,
                    "containers": [{"name": "web", "image": "nginx:1.27"}]}}),
            drift: &["spec.activeDeadlineSeconds: want 9007199254740993, live 9007199254740992"],
        },
        Case {
            source: "sibling: 1.0 in git is the integer 1 the server stores",
            manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1.0\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: web, image: nginx:1.27}\n",
            live: deployment_live(pod_spec_live(json!({})), json!({})),
            drift: &[],
        },
    ]);
}

/// A value of the wrong type for its field: the API server's decoder
/// refuses the object, so `kubectl apply` fails; the probe must say so as an
/// error naming the field, never compare it (an env `value: 80` used to
/// equal a live `"80"`).
#[test]
fn values_the_api_decoder_refuses_are_errors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "https://github.com/kubeshop/helm-charts/pull/514 (env value unquoted: cannot unmarshal number into Go struct field EnvVar...env.value of type string)",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n    env:\n    - name: PORT\n      value: 80\n",
            "case.yaml:6: document 1: spec.containers[0].env[0].value: must be a string, not a number (the API server rejects it; quote the value)",
        ),
        (
            "sibling: YAML 1.1 reads `on` as a boolean, and EnvVar.value is a string",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n    env:\n    - {name: DEBUG, value: on}\n",
            "case.yaml:6: document 1: spec.containers[0].env[0].value: must be a string, not a boolean (the API server rejects it; quote the value)",
        ),
        (
            "sibling: replicas quoted is a string where the API wants an integer",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: \"3\"\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: web, image: nginx:1.27}\n",
            "case.yaml:6: document 1: spec.replicas: must be an integer, not a string (the API server rejects it)",
        ),
        (
            "sibling: a quoted file mode (\"0644\") where the API wants the integer",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - {name: web, image: nginx:1.27}\n  volumes:\n  - name: conf\n    configMap: {name: conf, defaultMode: \"0644\"}\n",
            "case.yaml:8: document 1: spec.volumes[0].configMap.defaultMode: must be an integer, not a string (the API server rejects it)",
        ),
        (
            "sibling: a container port given as a mapping",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: {number: 80}\n",
            "case.yaml:6: document 1: spec.ports[0].port: must be an integer, not a mapping (the API server rejects it)",
        ),
    ];
    let mut failures = Vec::new();
    for (source, manifest, error) in cases {
        let loaded = parse_source("case.yaml", manifest, false);
        let got: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        if got != [error.to_string()] || !loaded.objects.is_empty() {
            failures.push(format!("{source}\n  want {error:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // What the decoder accepts passes: int-or-string and quantities take
    // either form, `1.0` reaches the server as 1, null means unset, and
    // custom resources are the CRD's to check.
    for manifest in [
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - {port: 80, targetPort: http}\n  - {port: 81, targetPort: 8081}\n",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1.0\n  strategy: null\n  template:\n    spec:\n      containers:\n      - name: web\n        resources:\n          limits: {cpu: 1, memory: 1Gi}\n",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  replicas: \"3\"\n",
    ] {
        let loaded = parse_source("case.yaml", manifest, false);
        assert!(loaded.errors.is_empty(), "{manifest}: {:?}", loaded.errors);
    }
}

/// Quantities inside custom resources: controller-gen declares a
/// `resource.Quantity` field as int-or-string with the quantity pattern, and
/// a webhook or controller that round-trips it through Go stores the
/// canonical form, so it compares by value like a built-in quantity.
#[test]
fn custom_resource_quantities_compare_by_value() {
    const QUANTITY: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";
    let quantity = json!({"anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY, "x-kubernetes-int-or-string": true});
    // Kueue's ClusterQueue, trimmed to the fields the case touches.
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "resourceGroups": {"type": "array", "x-kubernetes-list-type": "atomic", "items": {
            "type": "object", "properties": {
                "coveredResources": {"type": "array", "items": {"type": "string"}},
                "flavors": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "resources": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object",
                                "properties": {"name": {"type": "string"},
                                               "nominalQuota": quantity.clone()}}}}}}}}},
        "limits": {"type": "object", "additionalProperties": quantity},
        "note": {"type": "string"}}}}});
    let root = schema::from_crd_schema(&schema);
    let manifest = "apiVersion: kueue.x-k8s.io/v1beta1\nkind: ClusterQueue\nmetadata:\n  name: homelab\nspec:\n  limits: {cpu: 500m}\n  note: \"12000m\"\n  resourceGroups:\n  - coveredResources: [cpu, memory]\n    flavors:\n    - name: default\n      resources:\n      - {name: cpu, nominalQuota: 12000m}\n      - {name: memory, nominalQuota: 64Gi}\n";
    let live = |cpu: &str, note: &str| {
        json!({"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ClusterQueue",
            "metadata": meta("homelab", json!({})),
            "spec": {"limits": {"cpu": "0.5"}, "note": note, "resourceGroups": [{"coveredResources": ["cpu", "memory"],
                "flavors": [{"name": "default", "resources": [
                    {"name": "cpu", "nominalQuota": cpu}, {"name": "memory", "nominalQuota": "64Gi"}]}]}],
                "queueingStrategy": "BestEffortFIFO"}})
    };
    let loaded = parse_source("case.yaml", manifest, false);
    let probe_lines = |live: Value| -> Vec<String> {
        let common = ProbeCommon {
            name: "k".into(),
            layer: "kubernetes".into(),
            ..Default::default()
        };
        let probe =
            KubernetesProbe::new(&common, parse_fields(toml::Table::new()).unwrap()).unwrap();
        probe
            .differences(
                &loaded.objects[0],
                "default",
                live,
                Some(&root),
                &Default::default(),
            )
            .into_iter()
            .map(|(line, _)| line)
            .collect()
    };
    // https://github.com/shepherdjerred/monorepo/pull/1620: git's 12000m, the stored 12.
    assert!(probe_lines(live("12", "12000m")).is_empty());
    // The quota really changed live; and a string field is text, not a quantity.
    assert_eq!(
        probe_lines(live("16", "12")),
        [
            r#"spec.note: "12000m" → "12""#,
            r#"spec.resourceGroups: want [{"coveredResources":["cpu","memory"],"flavors":[{"name":"default","resources":[{"name":"cpu","nominalQuota":"12000m"},{"name":"memory","nominalQuota":"64Gi"}]}]}], live [{"coveredResources":["cpu","memory"],"flavors":[{"name":"default","resources":[{"name":"cpu","nominalQuota":"16"},{"name":"memory","nominalQuota":"64Gi"}]}]}]"#,
        ]
    );
}

/// helm-diff's reports: text that differs only in form is the same object;
/// a list the API keys may come back in another order, an atomic one may not.
#[test]
fn form_is_not_content_but_atomic_order_is() {
    check(vec![
        Case {
            source: "https://github.com/databus23/helm-diff/issues/305 (a chart checked out on Windows: CRLF line ends, also inside a block scalar)",
            manifest: "apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: app\r\ndata:\r\n  app.conf: |\r\n    a = 1\r\n    b = 2\r\n",
            live: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("app", json!({})),
                "data": {"app.conf": "a = 1\nb = 2\n"}}),
            drift: &[],
        },
        Case {
            source: "https://github.com/databus23/helm-diff/pull/273 (key order and indentation)",
            manifest: "kind: Service\napiVersion: v1\nspec:\n    type: ClusterIP\n    selector: {app.kubernetes.io/name: app-name}\n    ports:\n        -   targetPort: http\n            port: 80\n            name: http\nmetadata:\n    labels: {app.kubernetes.io/managed-by: Helm, app.kubernetes.io/name: app-name}\n    name: app-name\n",
            live: json!({"apiVersion": "v1", "kind": "Service",
                "metadata": meta("app-name", json!({"labels": {"app.kubernetes.io/name": "app-name", "app.kubernetes.io/managed-by": "Helm"}})),
                "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
                    "selector": {"app.kubernetes.io/name": "app-name"}, "sessionAffinity": "None", "type": "ClusterIP"}}),
            drift: &[],
        },
        Case {
            source: "https://github.com/databus23/helm-diff/issues/572 (ports reordered with protocol filled in: keyed, not drift; an arg moved: atomic, drift)",
            manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        command: [./podinfo, --port=9898, --level=info]\n        ports:\n        - {containerPort: 9898, name: http}\n        - {containerPort: 9797, name: metrics}\n",
            live: deployment_live(
                pod_spec_live(json!({"command": ["--level=info", "./podinfo", "--port=9898"],
                    "ports": [{"containerPort": 9797, "name": "metrics", "protocol": "TCP"},
                              {"containerPort": 9898, "name": "http", "protocol": "TCP"}]})),
                json!({}),
            ),
            drift: &[r#"spec.template.spec.containers[name=web].command: want ["./podinfo","--port=9898","--level=info"], live ["--level=info","./podinfo","--port=9898"]"#],
        },
    ]);
}

/// `key: null` in git: client-side `kubectl apply` removes the field
/// (kubernetes/kubernetes#40630; on create too since #125646), so a live
/// value there is drift, named as such; with nothing live it is in sync.
#[test]
fn null_in_git_removes_the_field() {
    check(vec![
        Case {
            source: "https://github.com/kubernetes/kubernetes/pull/40630 (replicas: null beside an HPA: apply would reset the scaled Deployment)",
            manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations: null\nspec:\n  replicas: null\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      nodeSelector: null\n      containers:\n      - {name: web, image: nginx:1.27}\n",
            live: {
                let mut live = deployment_live(pod_spec_live(json!({})), json!({"replicas": 5}));
                live["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "3"});
                live
            },
            drift: &["spec.replicas: want removed (null in git), live 5"],
        },
        Case {
            source: "https://github.com/kubernetes/kubernetes/issues/123304 (null in git, a map and a list item's field set live)",
            manifest: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeSelector: null\n  containers:\n  - name: web\n    image: nginx:1.27\n    env:\n    - {name: MODE, value: null}\n",
            live: json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web", json!({})),
                "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "web", "image": "nginx:1.27",
                    "env": [{"name": "MODE", "value": "debug"}]}]}}),
            drift: &[
                r#"spec.containers[name=web].env[name=MODE].value: want removed (null in git), live "debug""#,
                r#"spec.nodeSelector: want removed (null in git), live {"disk":"ssd"}"#,
            ],
        },
    ]);
}
