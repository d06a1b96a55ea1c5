//! Every storage of a session, whatever its kind: one driver per kind present (each
//! serves all storages of its kind, so a freeze across qemu sites stays one hold and
//! one cut), pairs routed by the kind of their storage, notices tagged by kind. The
//! executor sees one [`Driver`]; group events aggregate over pair reports, so a
//! group may span kinds.

use super::btrfs::{self, Btrfs};
use super::qemu::{self, Qemu};
use super::{Driver, DriverError, PairReport, Progress};
use crate::plan::{Pair, Plan};
use crate::vocab::{BaseCopy, DriverKind};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

/// A storage's notice, by the kind of its driver.
pub enum Notice {
    Qemu(qemu::Notice),
    Btrfs(btrfs::Notice),
}

pub struct Storages {
    qemu: Option<Qemu>,
    btrfs: Option<Btrfs>,
    /// The kind of each storage the session uses.
    kinds: BTreeMap<String, DriverKind>,
}

/// A channel for one driver whose notices are forwarded, wrapped, to `notices`.
fn forwarded<N: Send + 'static>(
    notices: &Sender<(String, Notice)>,
    wrap: fn(N) -> Notice,
) -> Sender<(String, N)> {
    let (tx, rx) = mpsc::channel::<(String, N)>();
    let out = notices.clone();
    std::thread::spawn(move || {
        for (site, notice) in rx {
            if out.send((site, wrap(notice))).is_err() {
                break;
            }
        }
    });
    tx
}

impl Storages {
    /// Connects the driver of every kind the plan's copy sets use (`lost_ok`: see
    /// [`Qemu::connect`]).
    pub fn connect(
        plan: &Plan,
        notices: Sender<(String, Notice)>,
        lost_ok: bool,
    ) -> Result<Storages, DriverError> {
        let kinds: BTreeMap<String, DriverKind> = plan
            .storages_used()
            .into_iter()
            .map(|id| (id.to_string(), plan.storages[id].driver))
            .collect();
        let uses = |kind| kinds.values().any(|k| *k == kind);
        let qemu = uses(DriverKind::Qemu)
            .then(|| Qemu::connect(plan, forwarded(&notices, Notice::Qemu), lost_ok))
            .transpose()?;
        let btrfs = uses(DriverKind::Btrfs)
            .then(|| Btrfs::connect(plan, forwarded(&notices, Notice::Btrfs)))
            .transpose()?;
        Ok(Storages { qemu, btrfs, kinds })
    }

    /// `pairs` by the kind of their source's storage: (qemu, btrfs).
    fn split(&self, pairs: &[Pair]) -> (Vec<Pair>, Vec<Pair>) {
        pairs
            .iter()
            .cloned()
            .partition(|p| self.kinds.get(&p.source.storage) != Some(&DriverKind::Btrfs))
    }

    /// Runs `on_qemu` and `on_btrfs` over their pairs (a driver without pairs is not
    /// asked), the reports of both.
    fn each<T>(
        &mut self,
        pairs: &[Pair],
        on_qemu: impl FnOnce(&mut Qemu, &[Pair]) -> Result<Vec<T>, DriverError>,
        on_btrfs: impl FnOnce(&mut Btrfs, &[Pair]) -> Result<Vec<T>, DriverError>,
    ) -> Result<Vec<T>, DriverError> {
        let (for_qemu, for_btrfs) = self.split(pairs);
        let mut out = Vec::new();
        if let (Some(d), false) = (self.qemu.as_mut(), for_qemu.is_empty()) {
            out.extend(on_qemu(d, &for_qemu)?);
        }
        if let (Some(d), false) = (self.btrfs.as_mut(), for_btrfs.is_empty()) {
            out.extend(on_btrfs(d, &for_btrfs)?);
        }
        Ok(out)
    }
}

/// `each` for the calls that return nothing.
impl Storages {
    /// What each driver present says, the qemu driver's first.
    fn gather<T>(
        &mut self,
        on_qemu: impl FnOnce(&mut Qemu) -> Vec<T>,
        on_btrfs: impl FnOnce(&mut Btrfs) -> Vec<T>,
    ) -> Vec<T> {
        let mut out = self.qemu.as_mut().map(on_qemu).unwrap_or_default();
        out.extend(self.btrfs.as_mut().map(on_btrfs).unwrap_or_default());
        out
    }
}

macro_rules! each_done {
    ($self:ident, $pairs:ident, $call:ident) => {
        $self
            .each(
                $pairs,
                |d, p| d.$call(p).map(|()| Vec::<()>::new()),
                |d, p| d.$call(p).map(|()| Vec::new()),
            )
            .map(drop)
    };
}

impl Driver for Storages {
    type Notice = Notice;

    fn preflight(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        each_done!(self, pairs, preflight)
    }

    fn start(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        let (for_qemu, _) = self.split(pairs);
        let result = self.each(pairs, |d, p| d.start(p, copy), |d, p| d.start(p, copy));
        if result.is_err() {
            // The btrfs part failed after the qemu part started: nothing stays started.
            if let Some(d) = self.qemu.as_mut().filter(|_| !for_qemu.is_empty()) {
                let _ = d.stop(&for_qemu);
            }
        }
        result
    }

    fn stop(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        each_done!(self, pairs, stop)
    }

    fn suspend(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        self.each(pairs, |d, p| d.suspend(p, copy), |d, p| d.suspend(p, copy))
    }

    fn resume(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        self.each(pairs, |d, p| d.resume(p, copy), |d, p| d.resume(p, copy))
    }

    fn freeze(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        self.each(pairs, |d, p| d.freeze(p), |d, p| d.freeze(p))
    }

    fn thaw(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        each_done!(self, pairs, thaw)
    }

    fn recover(&mut self, pairs: &[Pair]) -> Result<Vec<String>, DriverError> {
        self.each(pairs, |d, p| d.recover(p), |d, p| d.recover(p))
    }

    fn reverse(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        self.each(pairs, |d, p| d.reverse(p, copy), |d, p| d.reverse(p, copy))
    }

    fn interpret(&mut self, site: &str, notice: Notice) -> Vec<PairReport> {
        match (notice, self.qemu.as_mut(), self.btrfs.as_mut()) {
            (Notice::Qemu(n), Some(d), _) => d.interpret(site, n),
            (Notice::Btrfs(n), _, Some(d)) => d.interpret(site, n),
            _ => Vec::new(),
        }
    }

    fn verify_sides(
        &mut self,
        pairs: &[Pair],
        repair: bool,
    ) -> Result<Vec<crate::verify::Job>, DriverError> {
        self.each(
            pairs,
            |d, p| d.verify_sides(p, repair),
            |d, p| d.verify_sides(p, repair),
        )
    }

    fn verify_done(&mut self, pairs: &[Pair]) {
        let (for_qemu, for_btrfs) = self.split(pairs);
        if let Some(d) = self.qemu.as_mut() {
            d.verify_done(&for_qemu);
        }
        if let Some(d) = self.btrfs.as_mut() {
            d.verify_done(&for_btrfs);
        }
    }

    fn audit(&mut self) -> Vec<PairReport> {
        self.gather(Qemu::audit, Btrfs::audit)
    }

    fn progress(&mut self) -> Vec<Progress> {
        self.gather(Qemu::progress, Btrfs::progress)
    }

    fn heartbeat_ages(&self) -> Vec<(String, Duration)> {
        self.qemu
            .as_ref()
            .map(|d| d.heartbeat_ages())
            .unwrap_or_default()
    }

    fn reaches(&self, site: &str) -> bool {
        match self.kinds.get(site) {
            Some(DriverKind::Btrfs) => self.btrfs.as_ref().is_some_and(|d| d.reaches(site)),
            _ => self.qemu.as_ref().is_some_and(|d| d.reaches(site)),
        }
    }

    fn adopt(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        self.each(pairs, |d, p| d.adopt(p), |d, p| d.adopt(p))
    }

    fn shutdown(&mut self) {
        if let Some(d) = self.qemu.as_mut() {
            d.shutdown();
        }
        if let Some(d) = self.btrfs.as_mut() {
            d.shutdown();
        }
    }
}
