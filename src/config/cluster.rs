//! `[cluster]`: one process (`mode = "single"`, the default) or one replica
//! of several sharing the instances through Kubernetes Leases
//! (`mode = "kubernetes"`). The Kubernetes defaults come from what the
//! downward API puts in the environment (`POD_NAME`, `POD_NAMESPACE`,
//! `POD_IP`) and the service account's namespace file, so a StatefulSet
//! needs no per-replica config.

use super::loader::Loader;
use super::raw::RawCluster;
use super::spans::{key, Seg};
use super::types::{ClusterConfig, KubernetesCluster};

/// The service account's namespace, mounted into every pod.
pub const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
pub const DEFAULT_LEASE_DURATION: &str = "30s";
pub const DEFAULT_RENEW_INTERVAL: &str = "10s";

impl Loader<'_> {
    pub(super) fn cluster(
        &mut self,
        value: Option<toml::Value>,
        listen_port: u16,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> ClusterConfig {
        let raw: RawCluster = self.section(value, "cluster");
        let at = |name: &str| [key("cluster"), key(name)];
        match raw.mode.as_deref() {
            None | Some("single") => {
                // Keys that only mean something when sharded would be ignored
                // silently: say so instead.
                for (name, set) in [
                    ("identity", raw.identity.is_some()),
                    ("namespace", raw.namespace.is_some()),
                    ("advertise_url", raw.advertise_url.is_some()),
                    ("lease_duration", raw.lease_duration.is_some()),
                    ("renew_interval", raw.renew_interval.is_some()),
                    ("kubeconfig", raw.kubeconfig.is_some()),
                    ("context", raw.context.is_some()),
                ] {
                    if set {
                        self.error_at_key(
                            &at(name),
                            "only used with mode = \"kubernetes\"; remove it or set the mode",
                        );
                    }
                }
                return ClusterConfig::Single;
            }
            Some("kubernetes") => {}
            Some(other) => {
                self.error(
                    &at("mode"),
                    format!("unknown mode {other:?}: expected \"single\" or \"kubernetes\""),
                );
                return ClusterConfig::Single;
            }
        }
        let mode: [Seg; 2] = at("mode");
        let identity = match raw.identity.or_else(|| env("POD_NAME")).or_else(hostname) {
            Some(identity) => {
                if let Err(message) = valid_identity(&identity) {
                    let path = if self.has("identity") {
                        at("identity")
                    } else {
                        mode.clone()
                    };
                    self.error(&path, message);
                }
                identity
            }
            None => {
                self.error(
                    &mode,
                    "no identity: set [cluster] identity or the POD_NAME environment variable",
                );
                String::new()
            }
        };
        let namespace = raw.namespace.or_else(|| env("POD_NAMESPACE")).or_else(|| {
            std::fs::read_to_string(NAMESPACE_FILE)
                .ok()
                .map(|text| text.trim().to_string())
                .filter(|text| !text.is_empty())
        });
        let namespace = match namespace {
            Some(namespace) if valid_label(&namespace) => namespace,
            Some(namespace) => {
                let path = if self.has("namespace") {
                    at("namespace")
                } else {
                    mode.clone()
                };
                self.error(
                    &path,
                    format!(
                        "invalid namespace {namespace:?}: use lower-case letters, digits and '-'"
                    ),
                );
                namespace
            }
            None => {
                self.error(
                    &mode,
                    format!("no namespace: set [cluster] namespace or POD_NAMESPACE (outside a pod there is no {NAMESPACE_FILE})"),
                );
                String::new()
            }
        };
        let advertise_url = match raw.advertise_url {
            Some(url) => match url::Url::parse(&url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    url.trim_end_matches('/').to_string()
                }
                _ => {
                    self.error(
                        &at("advertise_url"),
                        format!("invalid URL {url:?}: expected http://host:port"),
                    );
                    url
                }
            },
            None => match env("POD_IP") {
                Some(ip) if ip.contains(':') => format!("http://[{ip}]:{listen_port}"),
                Some(ip) => format!("http://{ip}:{listen_port}"),
                None => {
                    self.error(
                        &mode,
                        "no advertise_url: set [cluster] advertise_url or POD_IP (the downward API's status.podIP)",
                    );
                    String::new()
                }
            },
        };
        let lease_duration = self.duration(
            raw.lease_duration.as_deref(),
            DEFAULT_LEASE_DURATION,
            &at("lease_duration"),
            false,
        );
        let renew_interval = self.duration(
            raw.renew_interval.as_deref(),
            DEFAULT_RENEW_INTERVAL,
            &at("renew_interval"),
            false,
        );
        if renew_interval >= lease_duration {
            let path = if self.has("renew_interval") {
                at("renew_interval")
            } else {
                at("lease_duration")
            };
            self.error(
                &path,
                format!(
                    "renew_interval ({}) must be shorter than lease_duration ({}), or the Lease lapses between renewals; a third of it is usual",
                    crate::model::duration::compact(renew_interval),
                    crate::model::duration::compact(lease_duration)
                ),
            );
        }
        let kubeconfig = raw
            .kubeconfig
            .and_then(|text| self.readable_file(&text, &at("kubeconfig")));
        if raw.context.is_some() && kubeconfig.is_none() && !self.has("kubeconfig") {
            self.error_at_key(&at("context"), "needs kubeconfig");
        }
        ClusterConfig::Kubernetes(KubernetesCluster {
            identity,
            namespace,
            advertise_url,
            lease_duration,
            renew_interval,
            kubeconfig,
            context: raw.context,
        })
    }

    /// Whether `[cluster]` sets `name` in the file.
    fn has(&self, name: &str) -> bool {
        self.root
            .get("cluster")
            .and_then(|cluster| cluster.get(name))
            .is_some()
    }
}

fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
}

/// An RFC 1123 label: what a namespace (and a pod name) must be.
fn valid_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// The identity names the Lease `driftwatch-<identity>`, a DNS subdomain.
fn valid_identity(identity: &str) -> Result<(), String> {
    let ok = !identity.is_empty()
        && identity.len() <= 253 - "driftwatch-".len()
        && identity.split('.').all(valid_label);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid identity {identity:?}: it names the Lease driftwatch-<identity>, so use lower-case letters, digits, '-' and '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::loader::{load_text, TEST_REPO};
    use super::*;
    use std::time::Duration;

    const PROBE: &str = "[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n";

    fn load(cluster: &str) -> Result<ClusterConfig, Vec<String>> {
        load_text(&format!("{TEST_REPO}{PROBE}{cluster}")).map(|config| config.cluster)
    }

    #[test]
    fn single_is_the_default() {
        assert_eq!(load("").unwrap(), ClusterConfig::Single);
        assert_eq!(
            load("[cluster]\nmode = \"single\"\n").unwrap(),
            ClusterConfig::Single
        );
    }

    #[test]
    fn kubernetes_mode_with_everything_given() {
        let config = load(
            "[cluster]\nmode = \"kubernetes\"\nidentity = \"driftwatch-0\"\nnamespace = \"ops\"\n\
             advertise_url = \"http://10.0.0.7:9808/\"\nlease_duration = \"2s\"\nrenew_interval = \"500ms\"\n",
        )
        .unwrap();
        let ClusterConfig::Kubernetes(k) = config else {
            panic!("{config:?}")
        };
        assert_eq!(k.identity, "driftwatch-0");
        assert_eq!(k.namespace, "ops");
        assert_eq!(k.advertise_url, "http://10.0.0.7:9808");
        assert_eq!(k.lease_duration, Duration::from_secs(2));
        assert_eq!(k.renew_interval, Duration::from_millis(500));
        assert!(k.kubeconfig.is_none());
    }

    #[test]
    fn every_bad_cluster_key_is_reported_at_its_spot() {
        let errors = load(
            "[cluster]\nmode = \"kubernetes\"\nidentity = \"Driftwatch_0\"\nnamespace = \"ops\"\n\
             advertise_url = \"ftp://x\"\nlease_duration = \"10s\"\nrenew_interval = \"10s\"\n\
             kubeconfig = \"missing.yaml\"\nleader = true\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "cluster.identity",
                "cluster.advertise_url",
                "cluster.renew_interval",
                "cluster.kubeconfig",
                "cluster.leader",
            ],
            "{errors:#?}"
        );
        assert!(errors[0].starts_with("dw.toml:10:12: "), "{errors:?}");
        assert!(
            errors[2].contains("must be shorter than lease_duration"),
            "{errors:?}"
        );
        assert!(errors[4].contains("unknown key `leader`"), "{errors:?}");
    }

    #[test]
    fn unknown_modes_and_sharded_keys_in_single_mode_are_errors() {
        let errors = load("[cluster]\nmode = \"raft\"\n").unwrap_err();
        assert_eq!(
            errors,
            ["dw.toml:9:8: cluster.mode: unknown mode \"raft\": expected \"single\" or \"kubernetes\""]
        );
        let errors = load("[cluster]\nidentity = \"a\"\n").unwrap_err();
        assert!(
            errors[0].starts_with("dw.toml:9:1: cluster.identity: only used with mode"),
            "{errors:?}"
        );
    }

    #[test]
    fn kubernetes_defaults_come_from_the_downward_api() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dw.toml");
        let text = format!(
            "[server]\nlisten = \"0.0.0.0:9808\"\n{TEST_REPO}{PROBE}[cluster]\nmode = \"kubernetes\"\n"
        );
        let env = |name: &str| match name {
            "POD_NAME" => Some("driftwatch-2".to_string()),
            "POD_NAMESPACE" => Some("monitoring".to_string()),
            "POD_IP" => Some("10.1.2.3".to_string()),
            _ => None,
        };
        let config =
            super::super::loader::load_str_with_env(&path, &text, &crate::probe::Layers, &env)
                .unwrap();
        assert_eq!(
            config.cluster,
            ClusterConfig::Kubernetes(KubernetesCluster {
                identity: "driftwatch-2".into(),
                namespace: "monitoring".into(),
                advertise_url: "http://10.1.2.3:9808".into(),
                lease_duration: Duration::from_secs(30),
                renew_interval: Duration::from_secs(10),
                kubeconfig: None,
                context: None,
            })
        );
        // Without the downward API (and outside a pod) the replica cannot
        // name where its Lease lives nor how it is reached.
        if std::path::Path::new(NAMESPACE_FILE).exists() {
            return;
        }
        let errors =
            super::super::loader::load_str_with_env(&path, &text, &crate::probe::Layers, &|_| None)
                .unwrap_err()
                .problems;
        let messages: Vec<String> = errors
            .iter()
            .map(|e| e.replacen(&format!("{}:", path.display()), "dw.toml:", 1))
            .collect();
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("dw.toml:11:8: cluster.mode: no namespace")),
            "{messages:#?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("dw.toml:11:8: cluster.mode: no advertise_url")),
            "{messages:#?}"
        );
    }
}
