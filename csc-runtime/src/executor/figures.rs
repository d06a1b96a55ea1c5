//! What the metrics page shows: the executor's figures as of now.

use super::Executor;
use crate::drivers::Driver;
use crate::machine::Solution;
use crate::metrics;
use crate::vocab::Keyword;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

impl<S: Solution, D: Driver> Executor<S, D> {
    /// What the metrics page shows, as of now.
    pub(super) fn figures(&mut self) -> metrics::Figures {
        let now = Instant::now();
        // Counted in one pass under the lock, not copied out: the history grows for
        // as long as the run lasts, and this runs every second.
        type Counts<K> = BTreeMap<u32, BTreeMap<K, u64>>;
        let (mut events, mut commands, actions_ended) = {
            let status = self.status.lock().expect("status");
            let mut events: Counts<&'static str> = BTreeMap::new();
            for (sequence, event) in &status.events {
                *events
                    .entry(*sequence)
                    .or_default()
                    .entry(event.as_str())
                    .or_default() += 1;
            }
            let mut commands: Counts<(&'static str, bool)> = BTreeMap::new();
            for (sequence, verb, ok) in &status.commands {
                *commands
                    .entry(*sequence)
                    .or_default()
                    .entry((verb.as_str(), *ok))
                    .or_default() += 1;
            }
            (events, commands, status.actions.clone())
        };
        let sequences = self
            .plan
            .sequences
            .iter()
            .map(|sequence| {
                let n = sequence.number;
                let reported = self.core.pair_states(n);
                metrics::SequenceFigures {
                    number: n,
                    state: self.core.sequence_state(n).as_str(),
                    reversed: self.reversed.contains(&n),
                    pairs: (self.plan.copysets.iter().enumerate())
                        .map(|(i, c)| (c.name.clone(), reported.get(&i).copied()))
                        .collect(),
                    events: events.remove(&n).unwrap_or_default(),
                    commands: commands.remove(&n).unwrap_or_default(),
                    freezes: self.freezes.get(&n).map(|f| metrics::FreezeFigures {
                        count: f.count,
                        last: f.last.map_or(0.0, |d| d.as_secs_f64()),
                        total: f.total.as_secs_f64(),
                        current: f
                            .held_since
                            .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64()),
                    }),
                    verified: self
                        .verified
                        .get(&n)
                        .map(|v| (v.bytes, v.differing, v.repaired)),
                }
            })
            .collect();
        let ages: BTreeMap<String, Duration> = self.driver.heartbeat_ages().into_iter().collect();
        let storages = (self.plan.storages_used().into_iter())
            .map(|name| metrics::StorageFigures {
                name: name.to_string(),
                reachable: self.driver.reaches(name),
                heartbeat_age: ages.get(name).map(Duration::as_secs_f64),
            })
            .collect();
        let copies = (self.driver.progress().into_iter())
            .map(|p| metrics::CopyFigures {
                sequence: p.sequence,
                copyset: self
                    .plan
                    .copyset_name(p.copyset)
                    .unwrap_or_default()
                    .to_string(),
                done: p.done,
                total: p.total,
                in_step: p.in_step,
                lag: p.lag.map(|l| (l.seconds, l.bytes)),
            })
            .collect();
        metrics::Figures {
            build: metrics::Build {
                session: self.plan.name.clone(),
                hash: S::HASH.to_string(),
                cssc_version: S::CSSC_VERSION.to_string(),
                manager: self.manager.clone().map(|m| (m, true)),
            },
            sequences,
            storages,
            copies,
            actions_started: self.actions,
            actions_ended,
        }
    }
}
