//! Port numbers for a deploy template: written numbers are kept, missing ones are allocated
//! deterministically in [20000, 32767) with no collision inside the Pod.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::naming::hash_u32;
use crate::resource::{DeployTemplate, PortProtocol, PortScope};

pub const RANGE_START: i32 = 20000;
pub const RANGE_END: i32 = 32767;

/// A template port with its number settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllocatedPort {
    pub name: String,
    pub port: i32,
    pub scope: PortScope,
    pub protocol: PortProtocol,
    /// Index of the container that declares it.
    #[serde(skip)]
    pub container: usize,
}

/// What is wrong with a template's ports; `path` is the field's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("{path}: {}", self.message())]
    Duplicate {
        path: String,
        name: String,
        first: String,
    },
    #[error("{path}: {}", self.message())]
    DuplicateNumber {
        path: String,
        port: i32,
        first: String,
    },
    #[error("{path}: {}", self.message())]
    OutOfRange { path: String, port: i32 },
    #[error("{}", self.message())]
    Exhausted,
}

impl PortError {
    /// The field the error is about (`""` for the template as a whole).
    pub fn path(&self) -> &str {
        match self {
            Self::Duplicate { path, .. }
            | Self::DuplicateNumber { path, .. }
            | Self::OutOfRange { path, .. } => path,
            Self::Exhausted => "",
        }
    }

    /// What is wrong and how to fix it, without the path.
    pub fn message(&self) -> String {
        match self {
            Self::Duplicate { name, first, .. } => format!(
                "port name {name:?} is already used by {first}; port names must be unique across a template's containers"
            ),
            Self::DuplicateNumber { port, first, .. } => {
                format!("port {port} is already used by {first}; give each port its own number")
            }
            Self::OutOfRange { port, .. } => format!(
                "port {port} is out of range; use 1..=65535 or leave it unset to allocate one"
            ),
            Self::Exhausted => "template has more ports than the range [20000, 32767) holds".into(),
        }
    }
}

/// Every rule the ports of `template` (whose path is `path`, e.g. `spec.deployTemplates[0]`)
/// break, in declaration order: one name space across the containers, numbers in range and
/// each used once. The one place these rules live: `validate` reports them all, admission
/// ([`allocate`]) stops at the first.
pub fn check(template: &DeployTemplate, path: impl std::fmt::Display) -> Vec<PortError> {
    let mut errors = Vec::new();
    // Paths are formatted only for an error: this runs on every admission.
    let here = |ci: usize, pi: usize| format!("{path}.spec.containers[{ci}].ports[{pi}]");
    let mut names: Vec<(&str, usize, usize)> = Vec::new();
    let mut numbers: Vec<(i32, usize, usize)> = Vec::new();
    for (ci, c) in template.spec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().enumerate() {
            if let Some(&(_, fc, fp)) = names.iter().find(|(n, _, _)| *n == p.name) {
                errors.push(PortError::Duplicate {
                    path: format!("{}.name", here(ci, pi)),
                    name: p.name.clone(),
                    first: here(fc, fp),
                });
            }
            names.push((&p.name, ci, pi));
            let Some(n) = p.port else { continue };
            if !(1..=65535).contains(&n) {
                let path = format!("{}.port", here(ci, pi));
                errors.push(PortError::OutOfRange { path, port: n });
            } else if let Some(&(_, fc, fp)) = numbers.iter().find(|(m, _, _)| *m == n) {
                errors.push(PortError::DuplicateNumber {
                    path: format!("{}.port", here(ci, pi)),
                    port: n,
                    first: here(fc, fp),
                });
            }
            numbers.push((n, ci, pi));
        }
    }
    errors
}

/// Settle every port of `template` (whose path is `path`, e.g. `spec.deployTemplates[0]`).
pub fn allocate(
    template: &DeployTemplate,
    path: impl std::fmt::Display,
) -> Result<Vec<AllocatedPort>, PortError> {
    if let Some(first) = check(template, path).into_iter().next() {
        return Err(first);
    }
    let mut used: BTreeSet<i32> = template
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().filter_map(|p| p.port))
        .collect();
    let span = (RANGE_END - RANGE_START) as u64;
    let mut out = Vec::new();
    for (ci, c) in template.spec.containers.iter().enumerate() {
        for p in &c.ports {
            let port = match p.port {
                Some(n) => n,
                None => {
                    if used.len() as u64 >= span {
                        return Err(PortError::Exhausted);
                    }
                    // Start where the name hashes to, so numbers do not shift when ports are added.
                    let seed = u64::from(hash_u32(&p.name));
                    let mut n = RANGE_START + (seed % span) as i32;
                    while used.contains(&n) {
                        n = if n + 1 >= RANGE_END {
                            RANGE_START
                        } else {
                            n + 1
                        };
                    }
                    used.insert(n);
                    n
                }
            };
            out.push(AllocatedPort {
                name: p.name.clone(),
                port,
                scope: p.scope,
                protocol: p.protocol,
                container: ci,
            });
        }
    }
    Ok(out)
}

/// `KUSCIA_PORT_<NAME>_NUMBER`, upper-cased with `-` as `_`.
pub fn env_name(port: &str) -> String {
    format!(
        "KUSCIA_PORT_{}_NUMBER",
        port.to_uppercase().replace('-', "_")
    )
}

/// The `ALLOCATED_PORTS` value, in Kuscia's JSON shape and in declaration order.
pub fn allocated_ports_json(ports: &[AllocatedPort]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        ports: &'a [AllocatedPort],
    }
    serde_json::to_string(&Doc { ports }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Container, ContainerPort, PodSpec};

    fn template(ports: &[&[(&str, Option<i32>)]]) -> DeployTemplate {
        DeployTemplate {
            name: "t".into(),
            role: None,
            replicas: None,
            network_policy: None,
            spec: PodSpec {
                restart_policy: Default::default(),
                affinity: None,
                containers: ports
                    .iter()
                    .enumerate()
                    .map(|(i, ps)| Container {
                        name: format!("c{i}"),
                        ports: ps
                            .iter()
                            .map(|(n, p)| ContainerPort {
                                name: n.to_string(),
                                port: *p,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn written_numbers_are_kept_and_missing_ones_allocated_in_range() {
        let t = template(&[&[("spu", None), ("fed", Some(8080))], &[("global", None)]]);
        let ports = allocate(&t, "spec.deployTemplates[0]").unwrap();
        assert_eq!(ports.len(), 3);
        assert_eq!(ports[1].port, 8080);
        assert_eq!(ports[2].container, 1);
        for p in [&ports[0], &ports[2]] {
            assert!((RANGE_START..RANGE_END).contains(&p.port), "{p:?}");
        }
        assert_ne!(ports[0].port, ports[2].port);
        // Deterministic.
        assert_eq!(allocate(&t, "x").unwrap(), ports);
    }

    #[test]
    fn check_reports_every_broken_rule_and_allocate_the_first() {
        let t = template(&[&[("a", Some(80)), ("a", Some(80))], &[("b", Some(0))]]);
        let all: Vec<String> = check(&t, "p").iter().map(ToString::to_string).collect();
        assert_eq!(
            all,
            [
                "p.spec.containers[0].ports[1].name: port name \"a\" is already used by p.spec.containers[0].ports[0]; port names must be unique across a template's containers",
                "p.spec.containers[0].ports[1].port: port 80 is already used by p.spec.containers[0].ports[0]; give each port its own number",
                "p.spec.containers[1].ports[0].port: port 0 is out of range; use 1..=65535 or leave it unset to allocate one",
            ]
        );
        assert_eq!(allocate(&t, "p").unwrap_err().to_string(), all[0]);
    }

    #[test]
    fn allocation_skips_taken_numbers() {
        let first = allocate(&template(&[&[("a", None)]]), "x").unwrap()[0].port;
        let t = template(&[&[("b", Some(first)), ("a", None)]]);
        let ports = allocate(&t, "x").unwrap();
        assert_eq!(ports[0].port, first);
        assert_ne!(ports[1].port, first);
        assert!((RANGE_START..RANGE_END).contains(&ports[1].port));
    }

    #[test]
    fn duplicates_are_errors_with_paths() {
        let t = template(&[&[("a", None)], &[("b", None), ("a", None)]]);
        let err = allocate(&t, "spec.deployTemplates[0]").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.deployTemplates[0].spec.containers[1].ports[1].name: port name \"a\" is already used by spec.deployTemplates[0].spec.containers[0].ports[0]; port names must be unique across a template's containers"
        );
        let t = template(&[&[("a", Some(80)), ("b", Some(80))]]);
        assert!(matches!(
            allocate(&t, "x"),
            Err(PortError::DuplicateNumber { .. })
        ));
        let t = template(&[&[("a", Some(0))]]);
        assert!(matches!(
            allocate(&t, "x"),
            Err(PortError::OutOfRange { .. })
        ));
    }

    #[test]
    fn env_names_and_json_shape() {
        assert_eq!(env_name("my-port"), "KUSCIA_PORT_MY_PORT_NUMBER");
        let t = template(&[&[("test", Some(26409))]]);
        let ports = allocate(&t, "x").unwrap();
        assert_eq!(
            allocated_ports_json(&ports),
            r#"{"ports":[{"name":"test","port":26409,"scope":"Local","protocol":"HTTP"}]}"#
        );
    }
}
