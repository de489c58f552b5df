//! The agent's end of the channel the libpcap capture threads send batches to, drained in
//! bounded parts so that one large batch never holds up the agent's loop.

use tokio::sync::mpsc::Receiver;

use super::{Drained, Observation};

/// The agent's end of the capture threads' channel, drained in bounded batches: a batch is
/// taken apart across drains when the budget ends inside it.
#[derive(Debug)]
pub struct BatchQueue {
    rx: Receiver<Vec<Observation>>,
    carry: std::vec::IntoIter<Observation>,
}

impl BatchQueue {
    /// Wraps the receiving end of the channel the capture threads send to.
    #[must_use]
    pub fn new(rx: Receiver<Vec<Observation>>) -> Self {
        Self {
            rx,
            carry: Vec::new().into_iter(),
        }
    }

    /// Waits until at least one observation is queued; false when every sender is gone and
    /// nothing is left.
    pub async fn wait(&mut self) -> bool {
        if self.carry.len() > 0 {
            return true;
        }
        match self.rx.recv().await {
            Some(batch) => {
                self.carry = batch.into_iter();
                true
            }
            None => false,
        }
    }

    /// Takes at most `budget` queued observations, handing each to `each`; never waits.
    pub fn drain(&mut self, budget: usize, mut each: impl FnMut(&Observation)) -> Drained {
        let mut taken = 0;
        while taken < budget {
            if let Some(obs) = self.carry.next() {
                each(&obs);
                taken += 1;
                continue;
            }
            match self.rx.try_recv() {
                Ok(batch) => self.carry = batch.into_iter(),
                Err(_) => return Drained { taken, more: false },
            }
        }
        Drained {
            taken,
            more: self.carry.len() > 0 || !self.rx.is_empty(),
        }
    }

    /// Closes the channel: senders fail from now on; what is queued can still be drained.
    pub fn close(&mut self) {
        self.rx.close();
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use sensor_common::ProbeKind;

    use super::BatchQueue;
    use crate::capture::{Drained, Observation};

    fn batch(n: u16) -> Vec<Observation> {
        (0..n)
            .map(|i| Observation {
                ts_ns: 0,
                src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
                dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                src_port: 40_000,
                dst_port: i,
                kind: ProbeKind::Syn,
                ifindex: 0,
                vlan_id: 0,
                fp: crate::capture::Fingerprint::default(),
            })
            .collect()
    }

    #[test]
    fn batches_drain_in_bounded_parts_across_batch_boundaries() {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tx.try_send(batch(5)).unwrap();
        tx.try_send(batch(3)).unwrap();
        let mut queue = BatchQueue::new(rx);
        let mut seen = Vec::new();
        let d = queue.drain(4, |o| seen.push(o.dst_port));
        assert_eq!(
            d,
            Drained {
                taken: 4,
                more: true
            }
        );
        let d = queue.drain(3, |o| seen.push(o.dst_port));
        assert_eq!(
            d,
            Drained {
                taken: 3,
                more: true
            }
        );
        let d = queue.drain(3, |o| seen.push(o.dst_port));
        assert_eq!(
            d,
            Drained {
                taken: 1,
                more: false
            }
        );
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 0, 1, 2]);
        // Exactly the budget with nothing left behind: no more pending.
        tx.try_send(batch(2)).unwrap();
        assert_eq!(
            queue.drain(2, |_| {}),
            Drained {
                taken: 2,
                more: false
            }
        );
        assert_eq!(
            queue.drain(2, |_| {}),
            Drained {
                taken: 0,
                more: false
            }
        );
        drop(tx);
        queue.close();
        assert_eq!(queue.drain(2, |_| {}), Drained::default());
    }
}
