//! The crate's layout reads one way (issue 9, house style): no module imports one that
//! imports it back, neither between the top-level folders (socket, flow, shard, pod, backend,
//! …) nor between the files of the crate. Read from the sources: every `crate::…` and
//! `super::…` path outside comments and in-file test modules is an edge to the longest module
//! it names; a module's own ancestors do not count (a child may use its parent's items).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_file_of_the_crate_imports_one_that_imports_it_back() {
    let graph = file_graph();
    assert!(graph.len() > 50, "read {} modules", graph.len());
    assert_acyclic(&graph, "module");
}

#[test]
fn no_top_level_folder_imports_one_that_imports_it_back() {
    let mut top = Graph::new();
    for (from, tos) in file_graph() {
        let head = |m: &str| m.split("::").next().unwrap_or_default().to_owned();
        let entry = top.entry(head(&from)).or_default();
        entry.extend(tos.iter().map(|t| head(t)).filter(|t| *t != head(&from)));
    }
    assert_acyclic(&top, "top-level module");
}

/// The cycle finder finds cycles (so the tests above can fail).
#[test]
fn a_cycle_is_found() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycles(&g), vec![vec!["a".to_owned(), "b".to_owned()]]);
}

fn assert_acyclic(graph: &Graph, what: &str) {
    let found = cycles(graph);
    let report: Vec<String> = (found.iter().flatten())
        .map(|m| {
            let within = found.iter().find(|c| c.contains(m)).unwrap();
            let to: Vec<_> = graph[m].iter().filter(|t| within.contains(t)).collect();
            format!("  {m} -> {to:?}")
        })
        .collect();
    assert!(
        found.is_empty(),
        "{what}s that import each other:\n{}",
        report.join("\n")
    );
}

/// Module path (`flow::route`; the crate root is "") → the modules it names.
fn file_graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let module_of = |p: &Path| {
        let rel = p.strip_prefix(&root).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into()).collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    let mut graph = Graph::new();
    for p in &files {
        let here = module_of(p);
        let text = std::fs::read_to_string(p).unwrap();
        let edges = graph.entry(here.clone()).or_default();
        for path in paths_named(&code_only(&text), &here) {
            let Some(to) = longest_module(&modules, &path) else {
                continue;
            };
            let ancestor = here == to || here.starts_with(&format!("{to}::")) || to.is_empty();
            if !ancestor {
                edges.insert(to);
            }
        }
    }
    graph
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file without comment lines and without its in-file `mod tests { … }` (tests may use
/// anything).
fn code_only(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
    code.collect::<Vec<_>>().join("\n")
}

/// Every `crate::a::b` and `super::a` path in `code` (one level of `{…}` groups expanded),
/// as a path from the crate root.
fn paths_named(code: &str, here: &str) -> Vec<String> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        for (i, _) in code.match_indices(start) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let (base, tail) = resolve_prefix(&code[i..], here);
            if let Some(group) = tail.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    out.push(join(&base, &ident_path(item.trim())));
                }
            } else {
                out.push(join(&base, &ident_path(tail)));
            }
        }
    }
    out
}

/// Consumes `crate::` or a run of `super::` at the start of `s`: the module it leads to and
/// the rest of the text.
fn resolve_prefix<'a>(s: &'a str, here: &str) -> (String, &'a str) {
    if let Some(rest) = s.strip_prefix("crate::") {
        return (String::new(), rest);
    }
    let mut parts: Vec<&str> = here.split("::").filter(|p| !p.is_empty()).collect();
    let mut rest = s;
    while let Some(r) = rest.strip_prefix("super::") {
        parts.pop();
        rest = r;
    }
    (parts.join("::"), rest)
}

fn ident_path(s: &str) -> String {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s[..end].trim_end_matches(':').to_owned()
}

fn join(base: &str, path: &str) -> String {
    match (base.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => base.to_owned(),
        (false, false) => format!("{base}::{path}"),
    }
}

fn longest_module(modules: &BTreeSet<String>, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// The strongly connected components with more than one member (Tarjan), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    self.low.entry(v).and_modify(|l| *l = (*l).min(lw));
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    self.low.entry(v).and_modify(|l| *l = (*l).min(iw));
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().rposition(|x| *x == v).unwrap();
                let mut comp: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if comp.len() > 1 {
                    comp.sort();
                    self.found.push(comp);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}
