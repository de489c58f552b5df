//! Bounded draining of the XDP ring buffer.
//!
//! A drain takes at most `budget` records, so the agent's loop interleaves shutdown, service
//! events and statistics with draining whatever the record rate. The ring cannot be peeked: a
//! drain that used its whole budget reports `more` (the next one may then find the ring empty,
//! which costs one lookup).

use aya::maps::{MapData, RingBuf};

use super::{
    Drained, Observation,
    decode::{DecodeError, decode},
};

/// Takes at most `budget` records from `ring`, handing each decoded one (or its decoding
/// error) to `each`.
pub fn drain_ring(
    ring: &mut RingBuf<MapData>,
    budget: usize,
    mut each: impl FnMut(Result<Observation, DecodeError>),
) -> Drained {
    let mut taken = 0;
    while taken < budget {
        let Some(item) = ring.next() else {
            return Drained { taken, more: false };
        };
        taken += 1;
        each(decode(&item));
    }
    Drained { taken, more: true }
}
