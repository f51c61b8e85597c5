//! The built-in segments, run with DataFusion over a lake built from the generator's
//! ground truth, against an independent plain-Rust oracle of `docs/segments.md`
//! (`ariane_local::segment_oracle`): same members (profile and key) and same payloads, for
//! every segment, and the same members when the run is split into profile partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ariane_datagen::{Export, GenConfig};
use ariane_local::segment_oracle::{self, OracleInput};
use ariane_local::truth_lake::{build_truth_lake, TruthLake};
use ariane_segments::catalog::{self, RunScope};
use ariane_segments::{run, SegmentDefinition};
use ariane_shared::lake;
use ariane_shared::model::SegmentMember;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

const PARTITIONS: usize = 4;

fn key_text(key: &BTreeMap<String, String>) -> String {
    key.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A payload value as an instant when it reads as one (SQL and oracle format them differently).
fn instant(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v.trim_end_matches('Z'), f) {
            return Some(t.and_utc());
        }
    }
    None
}

fn same_value(a: &str, b: &str) -> bool {
    a == b || matches!((instant(a), instant(b)), (Some(x), Some(y)) if x == y)
}

/// Every segment of `library` in one session over `scope` (one session per scope: the
/// lake's file listing and Parquet footers are read once).
async fn compute_all(
    dir: &std::path::Path,
    library: &[SegmentDefinition],
    scope: &RunScope,
) -> BTreeMap<String, (Vec<SegmentMember>, f64)> {
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = catalog::session(1024, scratch.path()).expect("session");
    catalog::register_run(&ctx, &catalog::local_base(dir).expect("base"), scope).await.expect("catalog");
    // As a bucket of the function computes it: the shared tables materialised once.
    run::materialise(&ctx, "profile_links", scope.run_at).await.expect("the shared tables");
    let mut out = BTreeMap::new();
    for def in library {
        let t = Instant::now();
        let members = run::compute(&ctx, def, scope.run_at).await.unwrap_or_else(|e| panic!("{}: {e}", def.name));
        out.insert(def.name.clone(), (members, t.elapsed().as_secs_f64()));
    }
    out
}

fn summary(lake: &TruthLake) {
    println!(
        "truth lake: {} persons, {} profiles, {} events ({} linked), {} links, {} contested keys ({} rows reassigned to the majority person), {} keys without usable identifier",
        lake.persons, lake.profiles, lake.events, lake.linked_events, lake.links, lake.contested_keys, lake.reassigned_rows, lake.unusable_keys
    );
    for e in &lake.exports {
        println!(
            "  {:<22} rows {:>6} events {:>6} rejected {:>4} | valid rejected {} invalid accepted {} without truth {} truth unmatched {} person without key {} ({} without usable identifier) | type differs {} instant differs {} (ambiguous local times {}) {:?} | {:.2}s ({:.2}s generating)",
            e.export, e.rows, e.events, e.rejected, e.valid_rejected, e.invalid_accepted, e.without_truth, e.truth_unmatched,
            e.person_without_anchor, e.person_without_identifiers, e.type_differs, e.instant_differs, e.ambiguous_instants, e.examples, e.seconds, e.generate_seconds
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_match_the_oracle_on_the_truth_lake() {
    let started = Instant::now();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).single().expect("date");
    let cfg = GenConfig::new(42, 1000, now);
    let tmp = tempfile::tempdir().expect("tempdir");
    let run_id = lake::run_id(now);
    let lake = build_truth_lake(&cfg, &Export::ALL, tmp.path(), &run_id, PARTITIONS).expect("truth lake");
    summary(&lake);
    println!("built in {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(lake.ingest_disagreements(), 0, "ingest disagrees with the generator's truth (see above)");
    assert!(lake.profiles > 500, "too few profiles: {}", lake.profiles);

    let input = OracleInput::load(&lake).expect("oracle input");
    println!(
        "oracle: {} profiles, {} events kept, {} repeated event ids dropped, {} kept events whose ingested type/instant differs from the truth",
        input.profiles(),
        input.events(),
        input.duplicate_event_ids,
        input.truth_differs
    );

    // Up-sell is exercised every way: members (one per profile), some with qualifying lines
    // in several ranges (the most recent decides), some whose latest line is in a range
    // traded up already (passed over), and non-members whose qualifying lines are all older
    // than 365 days.
    let up_sell = segment_oracle::up_sell_coverage(now, &input);
    println!("up-sell profiles: {up_sell:?}");
    assert!(
        up_sell.suggested > 400
            && up_sell.several_ranges > 200
            && up_sell.suggested_above_two_tiers > 50
            && up_sell.latest_passed_over > 100
            && up_sell.only_older > 80
            && up_sell.traded_up > 200,
        "the generated purchases do not exercise up-sell: {up_sell:?}"
    );

    let library = SegmentDefinition::library().expect("segment library");
    let names: BTreeSet<&str> = library.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, segment_oracle::SEGMENTS.iter().copied().collect(), "library and oracle cover the same segments");

    let whole = compute_all(tmp.path(), &library, &RunScope { run_at: now, snapshot_run_id: run_id.clone(), bucket: None }).await;
    let mut parts: Vec<BTreeMap<String, (Vec<SegmentMember>, f64)>> = Vec::new();
    for k in 0..PARTITIONS {
        parts.push(compute_all(tmp.path(), &library, &RunScope { run_at: now, snapshot_run_id: run_id.clone(), bucket: Some(k) }).await);
    }
    println!("queries done at {:.1}s", started.elapsed().as_secs_f64());

    let mut failures = Vec::new();
    for def in &library {
        let (members, secs) = &whole[&def.name];
        let got: BTreeMap<(String, String), BTreeMap<String, String>> =
            members.iter().map(|m| ((m.profile_id.clone(), key_text(&m.key)), m.payload.clone())).collect();
        let want = segment_oracle::expected_members(&def.name, now, &input).expect("oracle");
        let got_keys: BTreeSet<_> = got.keys().cloned().collect();
        let want_keys: BTreeSet<_> = want.keys().cloned().collect();
        assert_eq!(want_keys, segment_oracle::expected(&def.name, now, &input).expect("oracle"));
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for (_, k) in &got_keys {
            *per_key.entry(k.clone()).or_default() += 1;
        }
        println!(
            "{:<18} SQL {:>4} members, oracle {:>4}{} (query {:.2}s)",
            def.name,
            got_keys.len(),
            want_keys.len(),
            if per_key.len() > 1 { format!(" {per_key:?}") } else { String::new() },
            secs
        );
        if got_keys.is_empty() {
            failures.push(format!("{}: no member", def.name));
        }
        // Up-sell: at most one suggestion per profile (one activation message each).
        let profiles: BTreeSet<&String> = got_keys.iter().map(|(p, _)| p).collect();
        if def.name == "up-sell" && profiles.len() != got_keys.len() {
            failures.push(format!("up-sell: {} members for {} profiles", got_keys.len(), profiles.len()));
        }
        let only_sql: Vec<_> = got_keys.difference(&want_keys).collect();
        let only_oracle: Vec<_> = want_keys.difference(&got_keys).collect();
        if !only_sql.is_empty() || !only_oracle.is_empty() {
            failures.push(format!(
                "{}: {} members only in SQL (first: {:?}), {} only in the oracle (first: {:?})",
                def.name,
                only_sql.len(),
                only_sql.iter().take(5).collect::<Vec<_>>(),
                only_oracle.len(),
                only_oracle.iter().take(5).collect::<Vec<_>>()
            ));
        }
        let mut payload_diffs = Vec::new();
        for (k, want_payload) in &want {
            let Some(got_payload) = got.get(k) else { continue };
            let cols: BTreeSet<&String> = want_payload.keys().chain(got_payload.keys()).collect();
            for c in cols {
                let (a, b) = (got_payload.get(c).map(String::as_str), want_payload.get(c).map(String::as_str));
                if !matches!((a, b), (Some(a), Some(b)) if same_value(a, b)) {
                    payload_diffs.push(format!("{} [{}] {c}: SQL {a:?}, oracle {b:?}", k.0, k.1));
                }
            }
        }
        if !payload_diffs.is_empty() {
            failures.push(format!(
                "{}: {} payload values differ (first: {:?})",
                def.name,
                payload_diffs.len(),
                payload_diffs.iter().take(5).collect::<Vec<_>>()
            ));
        }

        // The same run split into profile partitions: the union is the whole, each member in its bucket.
        let mut union = BTreeSet::new();
        for (k, part) in parts.iter().enumerate() {
            for m in &part[&def.name].0 {
                assert_eq!(lake::profile_bucket(&m.profile_id, PARTITIONS), k, "{}: {} computed in bucket {k}", def.name, m.profile_id);
                assert!(union.insert((m.profile_id.clone(), key_text(&m.key))), "{}: {} in two buckets", def.name, m.profile_id);
            }
        }
        if union != got_keys {
            failures.push(format!(
                "{}: the {PARTITIONS} partitions give {} members, the whole run {} (symmetric difference: {:?})",
                def.name,
                union.len(),
                got_keys.len(),
                union.symmetric_difference(&got_keys).take(5).collect::<Vec<_>>()
            ));
        }
    }
    println!("total {:.1}s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "segments disagree with the oracle:\n{}", failures.join("\n"));
}
