//! Generated code, checked in as goldens (tests/goldens/, one module per solution and
//! valid fixture): compiled here against csc-runtime, verified fresh against what cssc
//! generates now, and exercised. `EXPECTORATE=overwrite cargo test` rewrites stale
//! goldens (expectorate: the same mechanism as the diagnostics' snapshots, and plain
//! files, so a golden is a Rust module this test compiles).

mod common;

#[path = "goldens/solutions/btrfs_hourly_weekly.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod btrfs_hourly_weekly;
#[path = "goldens/solutions/mixed_qemu_btrfs.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod mixed_qemu_btrfs;
#[path = "goldens/solutions/cppc.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod cppc;
#[path = "goldens/fixtures/actions.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod fixture_actions;
#[path = "goldens/fixtures/hostile_strings.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod fixture_hostile_strings;
#[path = "goldens/fixtures/minimal.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod fixture_minimal;
#[path = "goldens/fixtures/no_seq_nums_mixed_case.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod fixture_no_seq_nums_mixed_case;
#[path = "goldens/solutions/incremental_every_3h.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod incremental_every_3h;
#[path = "goldens/solutions/mirror_freeze_switch.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod mirror_freeze_switch;
#[path = "goldens/solutions/mirror_with_practice_copy.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod mirror_with_practice_copy;
#[path = "goldens/solutions/pit_continuous_pit.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod pit_continuous_pit;
#[path = "goldens/solutions/three_site_cascade.rs"]
#[allow(dead_code)] // compiled to prove it compiles; tests use only some items
#[rustfmt::skip] // prettyplease formats generated code, as cssc generate writes it
mod three_site_cascade;

use common::{fixtures, solutions};
use csc_compiler::{codegen, emit, front_end};
use csc_runtime::machine::{self as m, Solution};
use std::path::{Path, PathBuf};

/// Each document with the golden file its code is checked in as.
fn goldens() -> Vec<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens");
    let golden = |kind: &str, doc: &Path| {
        let stem = doc
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .replace('-', "_");
        dir.join(kind).join(format!("{stem}.rs"))
    };
    let mut all: Vec<(PathBuf, PathBuf)> = solutions()
        .into_iter()
        .map(|d| {
            let g = golden("solutions", &d);
            (d, g)
        })
        .collect();
    all.extend(fixtures("valid").into_iter().map(|d| {
        let g = golden("fixtures", &d);
        (d, g)
    }));
    all
}

/// How a golden is written again (its header says so).
const BLESS: &str = "EXPECTORATE=overwrite cargo test -p csc-compiler --test codegen";

fn generated(doc: &Path) -> String {
    let file = doc.to_string_lossy();
    let solution = front_end(&file, std::fs::read(doc).expect("read"))
        .solution
        .expect("valid");
    codegen::rust(&solution, &file, BLESS)
}

#[test]
fn goldens_are_fresh_and_all_compiled_here() {
    let this = include_str!("codegen.rs");
    for (doc, golden) in goldens() {
        let code = generated(&doc);
        let relative = golden
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"))
            .expect("inside tests");
        assert!(
            this.contains(&format!("#[path = \"{}\"]", relative.display())),
            "{} is not compiled by this test",
            relative.display()
        );
        expectorate::assert_contents(&golden, &code);
    }
}

#[test]
fn generation_is_deterministic() {
    for (doc, _) in goldens() {
        assert_eq!(generated(&doc), generated(&doc), "{}", doc.display());
    }
}

#[test]
fn embedded_xml_is_the_canonical_form() {
    let doc =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/hostile-strings.xml");
    let solution = front_end("x", std::fs::read(doc).expect("read"))
        .solution
        .expect("valid");
    let canonical = emit::xml::canonical(&solution);
    assert_eq!(
        fixture_hostile_strings::XML.render(&solution.copysets),
        canonical
    );
    assert_eq!(
        fixture_hostile_strings::HASH,
        codegen::solution_hash(&canonical)
    );
}

#[test]
fn hostile_strings_arrive_as_data() {
    let s = fixture_hostile_strings::SESSION;
    assert_eq!(
        s.name,
        "q\"uote's {braces} \"); std::process::exit(1); // r#\"#"
    );
    assert_eq!(s.storages[0].id, "sïte\"1");
    let plan = csc_runtime::plan::Plan::from_session(&s);
    assert_eq!(plan.copysets[0].volumes[0].name, "vol\"#1");
    assert_eq!(s.contacts[0].command, Some("/opt/notify \"x\"/a\\b\\nc"));
    let (_, commands) = fixture_hostile_strings::Chain::step(
        Default::default(),
        fixture_hostile_strings::Chain::event(1, csc_runtime::vocab::Event::OnError)
            .expect("onError"),
    );
    let general: Vec<m::Command> = commands.into_iter().map(Into::into).collect();
    assert!(matches!(
        general[1],
        m::Command::Run {
            program: "/usr/local/sbin/site \"switch\"; echo }",
            timeout_secs: 5400,
            ..
        }
    ));
}

mod cppc_machine {
    //! The CPPC chain ([0031]) over scripted event sequences, with the commands expected.
    use super::cppc::{Chain, Command, Event, State};
    use csc_runtime::machine::Solution;
    use csc_runtime::machine::{
        ContinuousCommand as CC, ContinuousEvent as CE, ContinuousState as CS,
    };
    use csc_runtime::machine::{
        PointInTimeCommand as PC, PointInTimeEvent as PE, PointInTimeState as PS,
    };
    use csc_runtime::vocab;

    /// Feeds events in order; the final state and every command issued, in order.
    fn script(events: &[Event]) -> (State, Vec<Command>) {
        events.iter().fold(
            (State::default(), Vec::new()),
            |(state, mut all), &event| {
                let (next, commands) = Chain::step(state, event);
                all.extend(commands);
                (next, all)
            },
        )
    }

    fn bill(event: Event) -> Command {
        Command::Notify {
            contact: "Bill",
            event,
        }
    }

    #[test]
    fn session_start_starts_the_mirror() {
        assert_eq!(Chain::start(), vec![Command::S1(CC::Start)]);
    }

    #[test]
    fn mirror_reaching_duplex_issues_nothing() {
        let (state, commands) = script(&[Event::S1(CE::Start), Event::S1(CE::Duplex)]);
        assert_eq!(state.s1, CS::Duplex);
        assert!(commands.is_empty());
    }

    #[test]
    fn mirror_failure_freezes_then_takes_the_point_in_time_copy() {
        let (state, commands) = script(&[
            Event::S1(CE::Start),
            Event::S1(CE::Duplex),
            Event::S1(CE::Error),
        ]);
        assert_eq!(state.s1, CS::Failed);
        assert_eq!(
            commands,
            vec![Command::S1(CC::Freeze), Command::S2(PC::Start)]
        );
    }

    #[test]
    fn the_whole_cycle_comes_back_to_sequence_one() {
        let (state, commands) = script(&[
            Event::S1(CE::Error),
            Event::S2(PE::Start),
            Event::S2(PE::Complete),
            Event::S3(CE::Start),
            Event::S3(CE::Error),
            Event::S4(PE::Start),
            Event::S4(PE::Complete),
        ]);
        assert_eq!(
            commands,
            vec![
                Command::S1(CC::Freeze),
                Command::S2(PC::Start),
                Command::S3(CC::Start),
                Command::S4(PC::Start),
                Command::S1(CC::Start),
            ]
        );
        assert_eq!(
            (state.s1, state.s2, state.s3, state.s4),
            (CS::Failed, PS::Complete, CS::Failed, PS::Complete)
        );
    }

    #[test]
    fn point_in_time_failures_notify_bill() {
        let (_, commands) = script(&[Event::S2(PE::Error), Event::S4(PE::Error)]);
        assert_eq!(
            commands,
            vec![bill(Event::S2(PE::Error)), bill(Event::S4(PE::Error))]
        );
    }

    #[test]
    fn events_the_document_ignores_change_state_only() {
        for event in [
            Event::S1(CE::Suspend),
            Event::S1(CE::Stop),
            Event::S3(CE::Duplex),
            Event::S2(PE::Stop),
        ] {
            let (next, commands) = Chain::step(State::default(), event);
            assert!(commands.is_empty(), "{event:?}");
            assert_ne!(next, State::default(), "{event:?}");
        }
    }

    #[test]
    fn typed_events_exist_only_where_the_copy_type_has_them() {
        assert_eq!(
            Chain::event(1, vocab::Event::OnDuplex),
            Some(Event::S1(CE::Duplex))
        );
        assert_eq!(
            Chain::event(2, vocab::Event::OnDuplex),
            None,
            "a point-in-time copy is never duplex"
        );
        assert_eq!(
            Chain::event(1, vocab::Event::OnComplete),
            None,
            "onComplete of a mirror is onDuplex"
        );
        assert_eq!(Chain::event(5, vocab::Event::OnError), None);
    }
}
