//! What a daemon says, turned into pair reports: job events, and the loss of a site
//! (its monitor closed, or its heartbeat unanswered).

use super::commands::QueryBlockJobs;
use super::qmp::Notice;
use super::replies::{IoStatus, JobEvent};
use super::{report, watched, Condition, Intent, Kind, Qemu};
use crate::drivers::{PairEvent, PairReport};

/// How a job's end is reported, from why it ended: nothing for a frozen pair (reported
/// at the cut), its error unless one was reported already (then a stop), `Complete`
/// for a point-in-time copy that ran to its end, else a stop.
fn end_event(
    error: Option<String>,
    intent: Intent,
    kind: Kind,
    condition: Condition,
) -> Option<PairEvent> {
    Some(match (error, intent) {
        (_, Intent::Freeze) => return None,
        // Failed already (its error reported), and now gone with its source's daemon:
        // still a failure to resume from, not a stop.
        (Some(_), Intent::Run) if condition == Condition::Failed => return None,
        (Some(e), _) if condition != Condition::Failed => PairEvent::Error(e),
        (None, Intent::Run) if kind == Kind::Backup => PairEvent::Complete,
        _ => PairEvent::Stopped,
    })
}

impl Qemu {
    /// What a daemon's notice means for the pairs: a job event, or its site lost.
    pub(super) fn on_notice(&mut self, site: &str, notice: Notice) -> Vec<PairReport> {
        let event = match notice {
            Notice::Job(event) => event,
            // The end of a connection this driver dropped because its daemon hangs.
            Notice::Disconnected if self.hung.contains(site) => return Vec::new(),
            Notice::Disconnected | Notice::Hung | Notice::DataHung => {
                let hung = notice != Notice::Disconnected;
                self.sites.remove(site);
                if !hung {
                    // A monitor connection can drop while its daemon lives: reconnect.
                    if let Ok(qmp) = watched(&self.plan, site, &self.notices) {
                        self.sites.insert(site.to_string(), qmp);
                        return Vec::new();
                    }
                }
                let mut reason = if notice == Notice::DataHung {
                    format!(
                        "storage {site}'s NBD server does not answer at its DATA address (no greeting within {} ms): the link to it is cut, or it hangs",
                        self.timing.hung_after.as_millis()
                    )
                } else if hung {
                    format!(
                        "storage {site} does not answer (hung for more than {} ms)",
                        self.timing.hung_after.as_millis()
                    )
                } else {
                    format!("storage {site} is unreachable (its daemon is gone)")
                };
                if hung {
                    self.hung.insert(site.to_string());
                    let targets_here = self.jobs.values().any(|j| j.pair.target.storage == site);
                    if targets_here {
                        if let Err(e) = self.destroy_connections(site) {
                            reason.push_str(&format!("; {e}"));
                        }
                    }
                }
                let mut reports = Vec::new();
                let mut failed = Vec::new();
                let ids: Vec<String> = self.jobs.keys().cloned().collect();
                for id in ids {
                    let job = self.jobs.get_mut(&id).expect("listed");
                    if job.pair.source.storage == site {
                        // The job died with its daemon.
                        reports.extend(self.finish(&id, Some(reason.clone())));
                    } else if job.pair.target.storage == site
                        && job.condition != Condition::Failed
                        && !job.frozen
                    {
                        // The job lives on in the source's daemon, failing: keep it to end it.
                        job.condition = Condition::Failed;
                        reports.push(report(&job.pair, PairEvent::Error(reason.clone())));
                        failed.push(id);
                    }
                }
                reports.extend(self.record_failed(&failed));
                return reports;
            }
        };
        let id = event.device().to_string();
        if self.names.pair_of_resync_job(&id).is_some() {
            return match event {
                JobEvent::Completed { len, error, .. } => self.resync_ended(&id, len, error),
                JobEvent::Cancelled { .. } => {
                    self.resync_ended(&id, None, Some("it was cancelled".into()))
                }
                JobEvent::Ready { .. } | JobEvent::Error { .. } => Vec::new(),
            };
        }
        let end = matches!(
            event,
            JobEvent::Completed { .. } | JobEvent::Cancelled { .. }
        );
        if end && self.ended.remove(&id) {
            return Vec::new();
        }
        if self.names.pair_of_job(&id).is_none() || !self.jobs.contains_key(&id) {
            return Vec::new();
        }
        match event {
            JobEvent::Ready { .. } => {
                let job = self.jobs.get_mut(&id).expect("checked");
                match &mut job.resync {
                    // In duplex once what changed since the split is copied too.
                    Some(resync) => {
                        resync.mirror_ready = true;
                        Vec::new()
                    }
                    None => vec![report(&job.pair, PairEvent::Duplex)],
                }
            }
            JobEvent::Error {
                operation, action, ..
            } => {
                let job = &self.jobs[&id];
                if job.condition == Condition::Failed || job.frozen || !self.stopped_on_error(&id) {
                    return Vec::new();
                }
                let job = self.jobs.get_mut(&id).expect("checked");
                job.condition = Condition::Failed;
                let message = format!("{operation} error ({action})");
                let mut reports = vec![report(&job.pair, PairEvent::Error(message))];
                reports.extend(self.record_failed(&[id]));
                reports
            }
            JobEvent::Completed { len, error, .. } => {
                if let (Some(len), Some(job)) = (len, self.jobs.get(&id)) {
                    self.copied
                        .insert((job.pair.sequence, job.pair.copyset), len);
                }
                self.finish(&id, error).into_iter().collect()
            }
            JobEvent::Cancelled { .. } => self.finish(&id, None).into_iter().collect(),
        }
    }

    /// The end of a job: its report, and its resources released.
    /// Records, from the failure of their targets, every write to the sources of the
    /// mirrors `ids`, whoever writes: the mirror's own bitmap misses a writer attached
    /// below it later (bypass.rs). A writer below it already is reported first, and
    /// its pair gets no record (it may have written before): it is copied in full.
    pub(super) fn record_failed(&mut self, ids: &[String]) -> Vec<PairReport> {
        let reports = self.find_bypasses(Some(ids));
        self.record_changes(ids);
        reports
    }

    /// Whether a job is stopped on an error now. A failed write-blocking mirror sends
    /// an error event per application write while its target is away; those still
    /// queued when it is resumed are stale, and the job says so (running, I/O ok).
    fn stopped_on_error(&self, id: &str) -> bool {
        let Some(job) = self.jobs.get(id) else {
            return false;
        };
        let listed = self
            .sites
            .get(&job.pair.source.storage)
            .and_then(|q| q.ask(&QueryBlockJobs).ok());
        match listed.and_then(|jobs| jobs.into_iter().find(|j| j.device == id)) {
            Some(state) => state.paused || state.io_status != IoStatus::Ok,
            // Gone, or its daemon cannot say: its end event tells the rest.
            None => true,
        }
    }

    pub(super) fn finish(&mut self, id: &str, error: Option<String>) -> Option<PairReport> {
        let job = self.jobs.remove(id)?;
        self.release(&job.pair, job.kind == Kind::Mirror, job.remote_node.clone());
        end_event(error, job.intent, job.kind, job.condition).map(|event| report(&job.pair, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_end_is_reported_as_what_was_asked() {
        let err = || Some("EIO".to_string());
        assert_eq!(
            end_event(None, Intent::Freeze, Kind::Mirror, Condition::Running),
            None
        );
        assert_eq!(
            end_event(err(), Intent::Freeze, Kind::Mirror, Condition::Running),
            None
        );
        assert_eq!(
            end_event(err(), Intent::Run, Kind::Mirror, Condition::Running),
            Some(PairEvent::Error("EIO".into()))
        );
        assert_eq!(
            end_event(err(), Intent::Run, Kind::Mirror, Condition::Failed),
            None,
            "a failed copy that ends on an error is still failed (resume restarts it)"
        );
        assert_eq!(
            end_event(None, Intent::Run, Kind::Backup, Condition::Running),
            Some(PairEvent::Complete)
        );
        assert_eq!(
            end_event(None, Intent::Stop, Kind::Backup, Condition::Running),
            Some(PairEvent::Stopped),
            "a stopped copy is not complete"
        );
        assert_eq!(
            end_event(None, Intent::Run, Kind::Mirror, Condition::Running),
            Some(PairEvent::Stopped)
        );
    }
}
