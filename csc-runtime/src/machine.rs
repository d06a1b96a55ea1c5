//! The vocabulary of generated state machines, typed by base copy type: a
//! point-in-time sequence has no duplex state, no duplex event and no freeze command,
//! so a generated machine cannot express one. Generated `step` functions are pure;
//! the executor does all I/O (quinn-proto and rustls split work the same way).

use crate::vocab::{Command as CommandKind, Event};
use std::fmt;

macro_rules! typed {
    ($(#[$meta:meta])* $name:ident => $general:ident { $($variant:ident => $to:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)+ }

        impl From<$name> for $general {
            fn from(value: $name) -> $general {
                match value { $($name::$variant => $general::$to,)+ }
            }
        }

        impl TryFrom<$general> for $name {
            type Error = $general;
            fn try_from(value: $general) -> Result<$name, $general> {
                // The catch-all is unreachable where a type has every general value.
                #[allow(unreachable_patterns)]
                match value { $($general::$to => Ok($name::$variant),)* other => Err(other) }
            }
        }
    };
}

typed! {
    /// What a Continuous sequence's group reports.
    ContinuousEvent => Event {
        Start => OnStart,
        Duplex => OnDuplex,
        Suspend => OnSuspend,
        Error => OnError,
        Stop => OnStop,
    }
}

typed! {
    /// What a Point-In-Time sequence's group reports.
    PointInTimeEvent => Event {
        Start => OnStart,
        Complete => OnComplete,
        Error => OnError,
        Stop => OnStop,
    }
}

typed! {
    /// What a Continuous sequence can be told.
    ContinuousCommand => CommandKind {
        Start => Start,
        Stop => Stop,
        Suspend => Suspend,
        Resume => Resume,
        Freeze => Freeze,
        Thaw => Thaw,
    }
}

typed! {
    /// What a Point-In-Time sequence can be told.
    PointInTimeCommand => CommandKind {
        Start => Start,
        Stop => Stop,
    }
}

/// Where a Continuous sequence's group stands, after the last event it reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContinuousState {
    #[default]
    Idle,
    /// Started; the initial copy is running.
    Copying,
    /// Every pair is in full duplex.
    Duplex,
    Suspended,
    Failed,
    Stopped,
}

/// Where a Point-In-Time sequence's group stands, after the last event it reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PointInTimeState {
    #[default]
    Idle,
    /// Started; the copy (or its background part) is running.
    Copying,
    /// Every pair's copy is complete.
    Complete,
    Failed,
    Stopped,
}

impl ContinuousState {
    /// Where a Continuous group stands once it reported `event`: the transition every
    /// generated `step` makes, whatever the document does on the event.
    pub fn after(event: ContinuousEvent) -> ContinuousState {
        match event {
            ContinuousEvent::Start => ContinuousState::Copying,
            ContinuousEvent::Duplex => ContinuousState::Duplex,
            ContinuousEvent::Suspend => ContinuousState::Suspended,
            ContinuousEvent::Error => ContinuousState::Failed,
            ContinuousEvent::Stop => ContinuousState::Stopped,
        }
    }
}

impl PointInTimeState {
    /// Where a Point-In-Time group stands once it reported `event`.
    pub fn after(event: PointInTimeEvent) -> PointInTimeState {
        match event {
            PointInTimeEvent::Start => PointInTimeState::Copying,
            PointInTimeEvent::Complete => PointInTimeState::Complete,
            PointInTimeEvent::Error => PointInTimeState::Failed,
            PointInTimeEvent::Stop => PointInTimeState::Stopped,
        }
    }
}

/// Where any sequence's group stands, whatever its copy type: what the executor
/// decides on (a variant, never a name) and what logs, the journal and `status` show
/// (`as_str`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "engine", derive(serde::Serialize, serde::Deserialize))]
pub enum SequenceState {
    #[default]
    Idle,
    Copying,
    Duplex,
    Complete,
    Suspended,
    Failed,
    Stopped,
}

impl SequenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SequenceState::Idle => "Idle",
            SequenceState::Copying => "Copying",
            SequenceState::Duplex => "Duplex",
            SequenceState::Complete => "Complete",
            SequenceState::Suspended => "Suspended",
            SequenceState::Failed => "Failed",
            SequenceState::Stopped => "Stopped",
        }
    }

    /// Its pairs copy: started, or in step.
    pub fn is_running(self) -> bool {
        matches!(self, SequenceState::Copying | SequenceState::Duplex)
    }

    /// Split by a freeze, a suspend or a failure: what `resume` brings back.
    pub fn is_split(self) -> bool {
        matches!(self, SequenceState::Suspended | SequenceState::Failed)
    }
}

impl fmt::Display for SequenceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ContinuousState> for SequenceState {
    fn from(state: ContinuousState) -> SequenceState {
        match state {
            ContinuousState::Idle => SequenceState::Idle,
            ContinuousState::Copying => SequenceState::Copying,
            ContinuousState::Duplex => SequenceState::Duplex,
            ContinuousState::Suspended => SequenceState::Suspended,
            ContinuousState::Failed => SequenceState::Failed,
            ContinuousState::Stopped => SequenceState::Stopped,
        }
    }
}

impl From<PointInTimeState> for SequenceState {
    fn from(state: PointInTimeState) -> SequenceState {
        match state {
            PointInTimeState::Idle => SequenceState::Idle,
            PointInTimeState::Copying => SequenceState::Copying,
            PointInTimeState::Complete => SequenceState::Complete,
            PointInTimeState::Failed => SequenceState::Failed,
            PointInTimeState::Stopped => SequenceState::Stopped,
        }
    }
}

/// A command of any generated machine, as the executor runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Tell every pair of sequence `sequence` to do `command`.
    Copy { sequence: u32, command: CommandKind },
    /// Notify a contact of `event` of `sequence`.
    Notify {
        contact: &'static str,
        sequence: u32,
        event: Event,
    },
    /// Run a program (argv, no shell) about `event` of `sequence`.
    Run {
        program: &'static str,
        timeout_secs: u64,
        sequence: u32,
        event: Event,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Copy { sequence, command } => write!(f, "{command} sequence {sequence}"),
            Command::Notify {
                contact,
                sequence,
                event,
            } => {
                write!(f, "notify {contact:?} of {sequence}:{event}")
            }
            Command::Run {
                program,
                timeout_secs,
                sequence,
                event,
            } => {
                write!(
                    f,
                    "run {program:?} about {sequence}:{event} (timeout {timeout_secs}s)"
                )
            }
        }
    }
}

/// A generated event: the sequence it is about, and its general form.
pub trait SequenceEvent: Copy {
    fn sequence(self) -> u32;
    fn general(self) -> Event;
}

pub trait Solution {
    /// Every sequence's state; `Default` is "all idle".
    type State: Copy + Default + fmt::Debug + PartialEq;
    /// An event of one sequence, typed by that sequence's copy type.
    type Event: SequenceEvent + fmt::Debug + PartialEq;
    /// A command the machine issues; the executor runs its general form.
    type Command: Copy + fmt::Debug + PartialEq + Into<Command>;

    /// The session as the document describes it.
    const SESSION: crate::session::Session;
    /// The canonical XML of the document, as `cssc fmt` prints it, around its copy
    /// sets (`XML.render(copy sets)` is the whole).
    const XML: crate::session::Canonical;
    /// FNV-1a 64 of the canonical XML, in hex: which solution a binary carries.
    const HASH: &'static str;
    /// The cssc version that generated the code.
    const CSSC_VERSION: &'static str;
    /// The chain's state machine as Graphviz DOT and as Mermaid.
    const DOT: &'static str;
    const MERMAID: &'static str;

    /// The typed event for `event` of sequence `sequence`, if that sequence has it.
    fn event(sequence: u32, event: Event) -> Option<Self::Event>;
    /// The state of one sequence (`None`: the session has no such sequence).
    fn sequence_state(state: &Self::State, sequence: u32) -> Option<SequenceState>;
    /// The transition function: pure, exhaustive, generated.
    fn step(state: Self::State, event: Self::Event) -> (Self::State, Vec<Self::Command>);
    /// The commands a new session begins with: start sequence 1 (its other starts
    /// come from events and SCHEDULEs).
    fn start() -> Vec<Self::Command>;
}
