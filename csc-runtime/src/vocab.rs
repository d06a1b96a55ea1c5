//! The closed vocabulary of solution documents: base copy types, modes, events and
//! commands. The compiler checks documents against it and generated code and the
//! executor speak it, so it is defined once, here, in the versioned runtime crate.

/// A word of a closed vocabulary, spelled one canonical way and matched case-insensitively.
pub trait Keyword: Copy + Sized + 'static {
    /// Every value, in canonical order.
    const ALL: &'static [Self];
    /// The canonical spelling.
    fn as_str(self) -> &'static str;

    /// Matches `text` (already trimmed) ignoring ASCII case.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str().eq_ignore_ascii_case(text))
    }
}

macro_rules! keywords {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        // The journal stores words in their canonical spelling, exactly.
        #[cfg_attr(feature = "engine", derive(serde::Serialize, serde::Deserialize))]
        pub enum $name {
            $($(#[$vmeta])* #[cfg_attr(feature = "engine", serde(rename = $text))] $variant,)+
        }

        impl Keyword for $name {
            const ALL: &'static [Self] = &[$(Self::$variant,)+];
            fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keywords! {
    /// The base copy types of [0018].
    CopyType {
        /// Copying is constant: a write to the source is copied to the target.
        Continuous => "Continuous",
        /// A copy of the data as it was at one instant.
        PointInTime => "Point-In-Time",
    }
}

keywords! {
    /// How a Continuous sequence copies ([0022]).
    ContinuousMode {
        /// A write completes only once it is on the target too.
        Synchronous => "Synchronous",
        /// Writes complete at once and reach the target later (a lag).
        Asynchronous => "Asynchronous",
    }
}

keywords! {
    /// How a Point-In-Time sequence copies.
    PointInTimeMode {
        /// Full background copy of the source as of the start.
        Copy => "Copy",
        /// Instant virtual copy; no background copy.
        NoCopy => "NoCopy",
        /// Copy only what changed since this sequence's last copy.
        Incremental => "Incremental",
    }
}

keywords! {
    /// What happens to a sequence (a consistency group), in canonical order.
    Event {
        OnStart => "onStart",
        OnDuplex => "onDuplex",
        OnComplete => "onComplete",
        OnSuspend => "onSuspend",
        OnError => "onError",
        OnStop => "onStop",
    }
}

keywords! {
    /// What an action can tell a sequence to do (DO_CMD).
    Command {
        Start => "start",
        Stop => "stop",
        Suspend => "suspend",
        Resume => "resume",
        Freeze => "freeze",
        Thaw => "thaw",
    }
}

keywords! {
    /// The command a CMDFLAGS element gives flags to.
    CommandFlags {
        StartFlags => "startFlags",
    }
}

keywords! {
    /// Storage drivers the runtime has.
    DriverKind {
        /// qemu-storage-daemons over QMP, volumes are block nodes, data over NBD.
        Qemu => "qemu",
        /// btrfs pools (mounted file systems, local or over ssh), volumes are
        /// subvolumes, copies are snapshots and send/receive.
        Btrfs => "btrfs",
    }
}

impl CopyType {
    /// The events a sequence of this type can raise. For Continuous, `onComplete`
    /// is accepted as another name of `onDuplex` (the initial copy is done).
    pub fn events(self) -> &'static [Event] {
        use Event::*;
        match self {
            CopyType::Continuous => &[OnStart, OnDuplex, OnComplete, OnSuspend, OnError, OnStop],
            CopyType::PointInTime => &[OnStart, OnComplete, OnError, OnStop],
        }
    }

    /// The commands a sequence of this type accepts.
    pub fn commands(self) -> &'static [Command] {
        use Command::*;
        match self {
            CopyType::Continuous => &[Start, Stop, Suspend, Resume, Freeze, Thaw],
            CopyType::PointInTime => &[Start, Stop],
        }
    }

    /// The mode keywords of this type, canonical spelling, for messages.
    pub fn mode_names(self) -> Vec<&'static str> {
        match self {
            CopyType::Continuous => ContinuousMode::ALL.iter().map(|m| m.as_str()).collect(),
            CopyType::PointInTime => PointInTimeMode::ALL.iter().map(|m| m.as_str()).collect(),
        }
    }
}

/// A base copy type with its mode: what one sequence does on every copy set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BaseCopy {
    Continuous(ContinuousMode),
    PointInTime(PointInTimeMode),
}

impl BaseCopy {
    pub fn copy_type(self) -> CopyType {
        match self {
            BaseCopy::Continuous(_) => CopyType::Continuous,
            BaseCopy::PointInTime(_) => CopyType::PointInTime,
        }
    }

    pub fn mode_name(self) -> &'static str {
        match self {
            BaseCopy::Continuous(m) => m.as_str(),
            BaseCopy::PointInTime(m) => m.as_str(),
        }
    }

    /// The default mode of a type: Synchronous, or a full Copy.
    pub fn default_for(copy_type: CopyType) -> BaseCopy {
        match copy_type {
            CopyType::Continuous => BaseCopy::Continuous(ContinuousMode::Synchronous),
            CopyType::PointInTime => BaseCopy::PointInTime(PointInTimeMode::Copy),
        }
    }

    /// Parses a mode keyword valid for `copy_type`.
    pub fn parse_mode(copy_type: CopyType, text: &str) -> Option<BaseCopy> {
        match copy_type {
            CopyType::Continuous => ContinuousMode::parse(text).map(BaseCopy::Continuous),
            CopyType::PointInTime => PointInTimeMode::parse(text).map(BaseCopy::PointInTime),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_case_insensitively_and_print_canonically() {
        assert_eq!(
            CopyType::parse("point-in-time"),
            Some(CopyType::PointInTime)
        );
        assert_eq!(Event::parse("ONERROR"), Some(Event::OnError));
        assert_eq!(Command::parse("Freeze"), Some(Command::Freeze));
        assert_eq!(Command::parse("Frieze"), None);
        assert_eq!(Command::Freeze.to_string(), "freeze");
    }

    #[test]
    fn point_in_time_has_no_duplex_and_no_freeze() {
        assert!(!CopyType::PointInTime.events().contains(&Event::OnDuplex));
        assert!(!CopyType::PointInTime.commands().contains(&Command::Freeze));
        assert!(CopyType::Continuous.commands().contains(&Command::Freeze));
    }

    #[test]
    fn modes_belong_to_their_type() {
        assert_eq!(
            BaseCopy::parse_mode(CopyType::PointInTime, "nocopy"),
            Some(BaseCopy::PointInTime(PointInTimeMode::NoCopy))
        );
        assert_eq!(
            BaseCopy::parse_mode(CopyType::PointInTime, "Synchronous"),
            None
        );
    }
}
