//! Upstream's FitError text: what `PodScheduled=False` and the `FailedScheduling` event
//! say, e.g. `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
//! taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are
//! available: 3 Preemption is not helpful for scheduling.`

use std::collections::HashMap;

use crate::plugins::Rejection;

/// Why a pod fits nowhere.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    pub num_all_nodes: usize,
    /// A PreFilter rejection (holds for every node); node reasons are then not listed.
    pub prefilter: Option<String>,
    /// Each rejected node's reasons.
    pub nodes: Vec<Rejection>,
    /// Nodes left out before filtering (a PreFilter narrowed the nodes), with the reason
    /// upstream gives for them.
    pub absent: Option<(usize, String)>,
    /// What preemption said (already prefixed `preemption: `), if anything.
    pub postfilter: Option<String>,
}

/// "N reason" entries, counted over nodes and sorted as strings (as upstream does).
pub fn histogram<'a>(reasons: impl Iterator<Item = (&'a str, usize)>) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (r, n) in reasons {
        *counts.entry(r).or_default() += n;
    }
    let mut out: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.sort();
    out
}

impl Diagnosis {
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        if let Some(pre) = &self.prefilter {
            msg.push_str(&format!(" {pre}."));
        } else {
            let reasons = histogram(
                self.nodes
                    .iter()
                    .flat_map(|r| r.reasons.iter().map(|s| (s.as_ref(), 1)))
                    .chain(self.absent.iter().map(|(n, r)| (r.as_str(), *n))),
            );
            if !reasons.is_empty() {
                msg.push_str(&format!(" {}.", reasons.join(", ")));
            }
        }
        // Preemption's text is itself a sentence ending in a period; upstream (1.33)
        // shows it once.
        if let Some(post) = self.postfilter.as_ref().filter(|p| !p.is_empty()) {
            msg.push(' ');
            msg.push_str(post);
            if !post.ends_with('.') {
                msg.push('.');
            }
        }
        msg
    }
}

/// The message preemption gives when no node can be made to fit, per node reasons.
pub fn preemption_message(num_all_nodes: usize, reasons: &[String]) -> String {
    let hist = histogram(reasons.iter().map(|r| (r.as_str(), 1)));
    let mut msg = format!("preemption: 0/{num_all_nodes} nodes are available:");
    if !hist.is_empty() {
        msg.push_str(&format!(" {}.", hist.join(", ")));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Plugin;

    fn rej(reasons: &[&'static str]) -> Rejection {
        Rejection {
            plugin: Plugin::NodeResourcesFit,
            resolvable: true,
            reasons: reasons.iter().map(|r| (*r).into()).collect(),
        }
    }

    #[test]
    fn messages() {
        struct Case {
            name: &'static str,
            diag: Diagnosis,
            want: &'static str,
        }
        let taint = "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }";
        let cases = [
            Case {
                name: "issue example",
                diag: Diagnosis {
                    absent: None,
                    num_all_nodes: 3,
                    prefilter: None,
                    nodes: vec![rej(&["Insufficient cpu"]), rej(&[taint]), rej(&[taint])],
                    postfilter: Some(preemption_message(3, &vec!["Preemption is not helpful for scheduling".to_string(); 3])),
                },
                want: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            },
            Case {
                name: "several reasons on one node count separately",
                diag: Diagnosis {
                    absent: None,
                    num_all_nodes: 2,
                    prefilter: None,
                    nodes: vec![rej(&["Insufficient cpu", "Insufficient memory"]), rej(&["Insufficient memory"])],
                    postfilter: None,
                },
                want: "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory.",
            },
            Case {
                name: "sorted as strings, like upstream",
                diag: Diagnosis {
                    absent: None,
                    num_all_nodes: 12,
                    prefilter: None,
                    nodes: std::iter::repeat_n(rej(&["b"]), 10).chain(std::iter::repeat_n(rej(&["a"]), 2)).collect(),
                    postfilter: None,
                },
                want: "0/12 nodes are available: 10 b, 2 a.",
            },
            Case {
                name: "prefilter rejection",
                diag: Diagnosis {
                    absent: None,
                    num_all_nodes: 3,
                    prefilter: Some("pod has unbound immediate PersistentVolumeClaims".into()),
                    nodes: vec![],
                    postfilter: Some(preemption_message(3, &vec!["Preemption is not helpful for scheduling".to_string(); 3])),
                },
                want: "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            },
            Case {
                name: "preemption policy Never",
                diag: Diagnosis {
                    absent: None,
                    num_all_nodes: 1,
                    prefilter: None,
                    nodes: vec![rej(&["Insufficient cpu"])],
                    postfilter: Some("preemption: not eligible due to preemptionPolicy=Never.".into()),
                },
                want: "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.",
            },
        ];
        let absent = Diagnosis {
            num_all_nodes: 3,
            prefilter: None,
            nodes: vec![rej(&["Insufficient cpu"])],
            absent: Some((2, "node is filtered out by the prefilter result".into())),
            postfilter: None,
        };
        assert_eq!(
            absent.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node is filtered out by the prefilter result."
        );
        for c in cases {
            assert_eq!(c.diag.message(), c.want, "{}", c.name);
        }
    }
}
