//! A document's text, its name, and a line index built once, so positions are
//! computed only for diagnostics and in O(log n) (roxmltree's `text_pos_at` rescans
//! the whole text on every call).

use std::ops::Range;

/// Byte offsets into a document's text.
pub type Span = Range<usize>;

/// A one-based line and column (in characters) of a byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

pub struct SourceFile {
    /// What diagnostics call the file: its path as given, or `<stdin>`.
    pub name: String,
    pub text: String,
    /// Built on the first position asked for: a valid document never needs it.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: String) -> Self {
        SourceFile {
            name: name.into(),
            text,
            line_starts: std::sync::OnceLock::new(),
        }
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
    }

    /// The position of byte `offset` (clamped to the text and to a char boundary).
    pub fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts().partition_point(|&start| start <= offset) - 1;
        let column = self.text[self.line_starts()[line]..offset].chars().count() + 1;
        Position {
            line: line + 1,
            column,
        }
    }

    pub fn line_count(&self) -> usize {
        self.line_starts().len()
    }

    /// Where zero-based `line` starts.
    pub fn line_start(&self, line: usize) -> usize {
        self.line_starts()[line]
    }

    /// Where zero-based `line` ends, before its line break.
    pub fn line_end(&self, line: usize) -> usize {
        let end = self
            .line_starts()
            .get(line + 1)
            .map_or(self.text.len(), |&next| next - 1);
        end - usize::from(self.text[..end].ends_with('\r'))
    }

    /// The byte offset of a one-based line and column, as parsers report them.
    pub fn offset(&self, position: Position) -> usize {
        let Some(&start) = self.line_starts().get(position.line.saturating_sub(1)) else {
            return self.text.len();
        };
        self.text[start..]
            .char_indices()
            .nth(position.column.saturating_sub(1))
            .map_or(self.text.len(), |(i, _)| start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let src = SourceFile::new("t", "ab\nçd\n\nx".to_string());
        assert_eq!(src.position(0), Position { line: 1, column: 1 });
        assert_eq!(src.position(3), Position { line: 2, column: 1 });
        // 'd' comes after the two-byte 'ç': byte 5, column 2.
        assert_eq!(src.position(5), Position { line: 2, column: 2 });
        assert_eq!(src.position(8), Position { line: 4, column: 1 });
        assert_eq!(src.position(100), Position { line: 4, column: 2 });
        assert_eq!(src.offset(Position { line: 2, column: 2 }), 5);
        assert_eq!(src.offset(Position { line: 9, column: 1 }), src.text.len());
    }
}
