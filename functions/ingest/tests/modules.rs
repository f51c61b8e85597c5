//! The crate's modules import each other without cycles (`use crate::...` and inline
//! `crate::module::` paths form a directed acyclic graph).

use std::collections::{BTreeMap, BTreeSet};

fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.extension().is_none_or(|e| e != "rs") || name == "main" || name == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let used: BTreeSet<String> = code
            .match_indices("crate::")
            .map(|(i, _)| code[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
            .filter(|m| {
                !m.is_empty() && *m != name && code.lines().any(|l| !l.trim_start().starts_with("//") && l.contains(&format!("crate::{m}")))
            })
            .collect();
        graph.insert(name, used);
    }
    graph
}

#[test]
fn modules_form_a_dag() {
    let graph = imports();
    assert!(graph.len() > 10, "{graph:?}");
    // Kahn: repeatedly remove modules whose imports are all removed.
    let mut left = graph.clone();
    while !left.is_empty() {
        let ready: Vec<String> =
            left.iter().filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d))).map(|(m, _)| m.clone()).collect();
        assert!(!ready.is_empty(), "import cycle among {:?}", left);
        for m in ready {
            left.remove(&m);
        }
    }
    assert!(graph["values"].iter().all(|m| m == "amount"), "values is a leaf but for amount: {:?}", graph["values"]);
}
