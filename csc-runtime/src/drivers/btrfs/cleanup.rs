//! `cleanup` on btrfs pools, after a run was killed: removes what this session left
//! half done in each pool's `.cssc`: subvolumes a receive began and did not finish
//! (writable: every finished copy is read-only), links being made, running markers.
//! The read-only snapshots stay: target volumes link to them and the newest is the
//! base of the next incremental copy (docs/btrfs.md). Never another session's names.

use super::names::{Names, DIR};
use super::pool::Pool;
use crate::drivers::Cleaned;
use crate::plan::Plan;
use crate::vocab::DriverKind;

pub fn cleanup(plan: &Plan) -> Cleaned {
    let names = Names::of_session(&plan.name);
    let mut cleaned = Cleaned::new();
    for id in plan.storages_of(DriverKind::Btrfs) {
        let removed = Pool::new(id, &plan.storages[id].endpoint).and_then(|pool| {
            let read_only = pool.read_only()?;
            let half: Vec<String> = pool
                .list()?
                .into_iter()
                .filter(|s| names.owns(&s.name) && !read_only.contains(&s.name))
                .map(|s| format!("{DIR}/{}", s.name))
                .collect();
            pool.delete(&half)?;
            let files: Vec<String> = pool
                .entries(DIR)?
                .into_iter()
                .filter(|n| names.is_file(n))
                .map(|n| format!("{DIR}/{n}"))
                .collect();
            for file in &files {
                pool.run(&["rm", "-f", &pool.path(file)])?;
            }
            Ok(half.into_iter().chain(files).collect())
        });
        cleaned.insert(id.to_string(), removed);
    }
    cleaned
}
