//! A step's network events as progress events, each distinct line once
//! and at most [`MAX_DISTINCT`] of them per step.

use super::{Event, Progress};
use crate::egress::{EgressEvent, Reporter};
use crate::graph::NodeId;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Distinct network events reported per step.
const MAX_DISTINCT: usize = 200;

/// The reporter of step `id`.
pub(super) fn reporter(id: NodeId, progress: &Progress) -> Reporter {
    let progress = progress.clone();
    let seen = Mutex::new(HashSet::new());
    Arc::new(move |ev: EgressEvent| {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > MAX_DISTINCT || !seen.insert(ev.clone()) {
            return;
        }
        if seen.len() > MAX_DISTINCT {
            let note = format!("[egress] more than {MAX_DISTINCT} distinct destinations; the rest are not logged");
            let _ = progress.send(Event::Output(id, note));
            return;
        }
        let _ = progress.send(Event::Egress(id, ev));
    })
}
