//! How far long copies have come, for people: a progress bar per copy when stderr is
//! a terminal (indicatif), else a log line per copy each time it is shown.

use crate::drivers::Progress;
use std::collections::BTreeMap;

pub(crate) struct ProgressView {
    /// The terminal's bars (`None`: log lines).
    multi: Option<indicatif::MultiProgress>,
    /// The bar of each running copy, by pair (sequence, copy set index).
    bars: BTreeMap<(u32, usize), indicatif::ProgressBar>,
}

impl ProgressView {
    pub(crate) fn new(multi: Option<indicatif::MultiProgress>) -> ProgressView {
        ProgressView {
            multi,
            bars: BTreeMap::new(),
        }
    }

    pub(crate) fn has_bars(&self) -> bool {
        self.multi.is_some()
    }

    /// Shows the copies that are not done yet (mirrors until in step); `name` names a
    /// copy set by index. The bars of copies that ended go.
    pub(crate) fn show<'a>(&mut self, copies: Vec<Progress>, name: impl Fn(usize) -> &'a str) {
        let running: BTreeMap<(u32, usize), Progress> = copies
            .into_iter()
            .filter(|p| !p.in_step && p.total > 0 && p.done < p.total)
            .map(|p| ((p.sequence, p.copyset), p))
            .collect();
        let Some(multi) = &self.multi else {
            for p in running.values() {
                let set = name(p.copyset);
                tracing::info!(
                    kind = "progress",
                    sequence = p.sequence,
                    copyset = set,
                    done = p.done,
                    total = p.total,
                    "sequence {} copy set {set}: {}% ({} of {} MiB)",
                    p.sequence,
                    p.done * 100 / p.total,
                    p.done >> 20,
                    p.total >> 20
                );
            }
            return;
        };
        self.bars.retain(|pair, bar| {
            let keep = running.contains_key(pair);
            if !keep {
                bar.finish_and_clear();
            }
            keep
        });
        for (pair, p) in running {
            let bar = self.bars.entry(pair).or_insert_with(|| {
                let style = indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> ");
                let bar = multi.add(indicatif::ProgressBar::new(p.total).with_style(style));
                bar.set_prefix(format!("sequence {} copy set {}", pair.0, name(pair.1)));
                bar
            });
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
    }
}
