//! Controller processes that share a Lease of their own, beside a world whose webhook only
//! admits (`--reconcile=false`, as the chart's admission Deployment runs): how a test takes
//! the leader away and waits for the next one.

use crate::wait_until;
use crate::webhook::Webhook;
use crate::world::{WAIT, World};

pub struct Leaders {
    lease: String,
    pub procs: Vec<Webhook>,
}

impl Leaders {
    /// `n` controller processes for `w`'s cluster, on a new Lease (2 s).
    pub fn start(w: &World, n: usize) -> Leaders {
        let lease = crate::unique("leaders");
        let flags = [
            format!("--lease-name={lease}"),
            "--lease-duration=2s".into(),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let procs = (0..n)
            .map(|_| Webhook::start(w.c, &w.s.tls, &w.s.signer.pub_dir, &flags))
            .collect();
        Leaders { lease, procs }
    }

    fn holder(&self, w: &World) -> String {
        let path = "jsonpath={.spec.holderIdentity}";
        w.c.kubectl_ok(&["get", "lease", &self.lease, "-n", "default", "-o", path])
    }

    /// The index of the live process the Lease names, if any.
    fn leader(&mut self, w: &World) -> Option<usize> {
        let holder = self.holder(w);
        self.procs.iter_mut().position(|p| {
            p.child.try_wait().unwrap().is_none() && holder.ends_with(&format!("-{}", p.child.id()))
        })
    }

    /// Kill the process that leads now, then wait until another live one holds the Lease.
    pub fn kill_leader(&mut self, w: &World) {
        let mut current = None;
        assert!(
            wait_until(WAIT, || {
                current = self.leader(w);
                current.is_some()
            }),
            "no controller process holds Lease {}: {:?}",
            self.lease,
            self.holder(w)
        );
        let dead = current.unwrap();
        self.procs[dead].child.kill().unwrap();
        self.procs[dead].child.wait().unwrap();
        let ok = wait_until(WAIT, || self.leader(w).is_some_and(|l| l != dead));
        assert!(ok, "no controller took over Lease {}", self.lease);
    }
}
