//! A fuzz smoke on the stable toolchain: every fixture, mutated a fixed number of
//! times by a seeded generator (bytes flipped, ranges cut, repeated or moved, markup
//! spliced in), through the properties the fuzz target checks. Deterministic: a
//! failure names its fixture and mutation, and happens again.

mod common;

use csc_compiler::fuzzing::check;

const MUTATIONS: usize = 300;

/// Markup that makes a mutation interesting to the parser and the checker.
const PIECES: &[&[u8]] = &[
    b"<SEQUENCE>",
    b"</SEQUENCE>",
    b"<TYPE>Continuous</TYPE>",
    b"<KEEP>0</KEEP>",
    b"<VOLUME storage=\"",
    b"&amp;",
    b"&#0;",
    b"<![CDATA[x]]>",
    b"<!--",
    b"-->",
    b"\"",
    b"<",
    b">",
    b"\xff\xfe",
    b"<SEQ_NUM>99999999999</SEQ_NUM>",
    b"<DO_CMD>freeze</DO_CMD>",
    b"driver=\"btrfs\"",
    b"ssh:a@b:1:/p",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(doc: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = doc.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = out.len();
        let (a, b) = {
            let (x, y) = (rng.below(len + 1), rng.below(len + 1));
            (x.min(y), x.max(y).min(x.min(y) + 64))
        };
        match rng.below(5) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                out.drain(a..b);
            }
            2 => {
                let piece = out[a..b].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, piece);
            }
            3 => {
                let piece = PIECES[rng.below(PIECES.len())];
                out.splice(a..a, piece.iter().copied());
            }
            _ => out.truncate(a),
        }
    }
    out
}

#[test]
fn mutated_fixtures_keep_the_front_end_s_properties() {
    let mut documents = common::fixtures("valid");
    documents.extend(common::fixtures("invalid"));
    documents.extend(common::solutions());
    assert!(documents.len() >= 60, "{} documents", documents.len());
    let mut runs = 0;
    for (n, path) in documents.iter().enumerate() {
        let doc = std::fs::read(path).expect("read");
        check(&doc);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        for m in 0..MUTATIONS {
            let mutated = mutate(&doc, &mut rng);
            let outcome = std::panic::catch_unwind(|| check(&mutated));
            assert!(
                outcome.is_ok(),
                "{} mutation {m} broke a property",
                path.display()
            );
            runs += 1;
        }
    }
    assert!(runs >= 60 * MUTATIONS);
}
