//! Pairwise quality of a resolution against ground truth: precision over the pairs of
//! source rows put in the same profile, recall over the pairs of rows of one person that
//! share a usable identifier (directly or through other rows of that person).

use std::collections::HashMap;

/// One source row: its true person, the profile it was resolved to, its usable
/// identifiers (`kind:value`).
#[derive(Clone, Debug)]
pub struct Labeled {
    pub person: String,
    pub profile: Option<String>,
    pub identifiers: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quality {
    pub rows: u64,
    pub predicted_pairs: u64,
    pub true_pairs: u64,
    pub linkable_pairs: u64,
    pub found_pairs: u64,
    pub precision: f64,
    pub recall: f64,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

fn find(p: &mut [usize], mut x: usize) -> usize {
    while p[x] != x {
        p[x] = p[p[x]];
        x = p[x];
    }
    x
}

pub fn pairwise(rows: &[Labeled]) -> Quality {
    let mut by_profile: HashMap<&str, u64> = HashMap::new();
    let mut by_profile_person: HashMap<(&str, &str), u64> = HashMap::new();
    for r in rows {
        if let Some(p) = &r.profile {
            *by_profile.entry(p).or_default() += 1;
            *by_profile_person.entry((p, &r.person)).or_default() += 1;
        }
    }
    let predicted_pairs: u64 = by_profile.values().map(|n| pairs(*n)).sum();
    let true_pairs: u64 = by_profile_person.values().map(|n| pairs(*n)).sum();
    // Per person: rows linked by a shared identifier value.
    let mut parent: Vec<usize> = (0..rows.len()).collect();
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        for id in &r.identifiers {
            match first.get(&(r.person.as_str(), id.as_str())) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                None => {
                    first.insert((&r.person, id), i);
                }
            }
        }
    }
    let mut by_comp: HashMap<usize, u64> = HashMap::new();
    let mut by_comp_profile: HashMap<(usize, &str), u64> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let c = find(&mut parent, i);
        *by_comp.entry(c).or_default() += 1;
        if let Some(p) = &r.profile {
            *by_comp_profile.entry((c, p)).or_default() += 1;
        }
    }
    let linkable_pairs: u64 = by_comp.values().map(|n| pairs(*n)).sum();
    let found_pairs: u64 = by_comp_profile.values().map(|n| pairs(*n)).sum();
    Quality {
        rows: rows.len() as u64,
        predicted_pairs,
        true_pairs,
        linkable_pairs,
        found_pairs,
        precision: if predicted_pairs == 0 { 1.0 } else { true_pairs as f64 / predicted_pairs as f64 },
        recall: if linkable_pairs == 0 { 1.0 } else { found_pairs as f64 / linkable_pairs as f64 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(person: &str, profile: Option<&str>, ids: &[&str]) -> Labeled {
        Labeled { person: person.into(), profile: profile.map(str::to_string), identifiers: ids.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn counts_pairs() {
        let rows = vec![
            row("a", Some("p1"), &["e:a"]),
            row("a", Some("p1"), &["e:a", "c:1"]),
            row("a", Some("p2"), &["c:1"]),
            row("b", Some("p1"), &["e:b"]),
            row("a", None, &["x:9"]),
        ];
        let q = pairwise(&rows);
        assert_eq!((q.predicted_pairs, q.true_pairs), (3, 1));
        assert_eq!((q.linkable_pairs, q.found_pairs), (3, 1));
    }
}
