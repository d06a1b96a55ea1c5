//! The chain as a graph: sequences are nodes, each event's actions are edges (to
//! the sequence a command targets, or to a contact or program). DOT and Mermaid.

use crate::ir::{Action, Solution};
use csc_runtime::vocab::Keyword;
use std::fmt::Write;

/// One edge: from a sequence, on an event, to a node, labelled.
struct Edge {
    from: u32,
    to: String,
    label: String,
}

/// Nodes that are not sequences (contacts and programs), with their labels, and the
/// edges, in IR order.
fn edges(s: &Solution) -> (Vec<(String, String)>, Vec<Edge>) {
    let mut others: Vec<(String, String)> = Vec::new();
    let mut edges = Vec::new();
    for seq in s.sequences.values() {
        for (event, actions) in &seq.events {
            for action in actions {
                let (to, label) = match action {
                    Action::Command { target, command } => (
                        format!("s{target}"),
                        format!("{}: {}", event.as_str(), command.as_str()),
                    ),
                    Action::Notify { contact } => (
                        other(&mut others, format!("notify {contact}")),
                        event.as_str().to_string(),
                    ),
                    Action::Run { program, .. } => (
                        other(&mut others, format!("run {program}")),
                        event.as_str().to_string(),
                    ),
                };
                edges.push(Edge {
                    from: seq.num,
                    to,
                    label,
                });
            }
        }
    }
    (others, edges)
}

/// The id of the node labelled `label`, added if new.
fn other(others: &mut Vec<(String, String)>, label: String) -> String {
    let index = others
        .iter()
        .position(|(_, l)| *l == label)
        .unwrap_or_else(|| {
            others.push((format!("a{}", others.len() + 1), label));
            others.len() - 1
        });
    others[index].0.clone()
}

fn sequence_label(s: &Solution, num: u32) -> String {
    let copy = s.sequences[&num].copy;
    format!("{num}: {} ({})", copy.copy_type(), copy.mode_name())
}

pub fn dot(s: &Solution) -> String {
    let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    let (others, edges) = edges(s);
    let mut out = String::new();
    let name = s.name.as_deref().unwrap_or("session");
    let _ = writeln!(
        out,
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box];",
        quote(name)
    );
    let _ = writeln!(out, "  start [shape=point];");
    for &num in s.sequences.keys() {
        let _ = writeln!(out, "  s{num} [label={}];", quote(&sequence_label(s, num)));
    }
    for (id, label) in &others {
        let _ = writeln!(out, "  {id} [shape=ellipse, label={}];", quote(label));
    }
    let _ = writeln!(out, "  start -> s1 [label=\"session start\"];");
    for e in &edges {
        let _ = writeln!(
            out,
            "  s{} -> {} [label={}];",
            e.from,
            e.to,
            quote(&e.label)
        );
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(s: &Solution) -> String {
    // Mermaid labels are quoted; a quote inside one is written as an entity.
    let quote = |text: &str| format!("\"{}\"", text.replace('"', "#quot;"));
    let (others, edges) = edges(s);
    let mut out = String::from("flowchart LR\n  start((start))\n");
    for &num in s.sequences.keys() {
        let _ = writeln!(out, "  s{num}[{}]", quote(&sequence_label(s, num)));
    }
    for (id, label) in &others {
        let _ = writeln!(out, "  {id}([{}])", quote(label));
    }
    out.push_str("  start -- \"session start\" --> s1\n");
    for e in &edges {
        let _ = writeln!(out, "  s{} -- {} --> {}", e.from, quote(&e.label), e.to);
    }
    out
}
