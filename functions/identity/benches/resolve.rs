//! Identity benchmark: observations per second per core with the in-memory adapter,
//! and DynamoDB requests / units / dollars per million observations (metered from the
//! encoded items) on a realistic mix: persons seen again and again on several channels,
//! with a first contact, new cookies, consents and traits now and then.
//!
//! `cargo bench -p ariane-identity --bench resolve -- [--persons N] [--observations M] [--first-load 1]`

use std::time::Instant;

use ariane_identity::resolver::Resolver;
use ariane_identity::rules::Rules;
use ariane_identity::store::{item_size, to_attributes, ItemStore, Key, MemStore, Metered, Op, Record, StoreError, Write};
use ariane_shared::identifiers::{Identifier, IdentifierKind as K};
use ariane_shared::model::{Consent, ConsentChannel, Observation, Traits};
use chrono::{Duration, TimeZone, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn mix(persons: usize, n: usize) -> Vec<Observation> {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|i| {
            let p = (next() % persons as u64) as usize;
            let channel = ["pos", "ecommerce", "web", "web", "web", "email", "sms", "app", "crm"][(next() % 9) as usize];
            let mut ids = Vec::new();
            match channel {
                "pos" => ids.push(Identifier::new(K::LoyaltyCard, format!("ARF{p:09}"))),
                "ecommerce" | "crm" => {
                    ids.push(Identifier::new(K::CustomerId, format!("C{p}")));
                    ids.push(Identifier::new(K::Email, format!("p{p}@mail.fr")));
                }
                "web" => {
                    ids.push(Identifier::new(K::CookieId, format!("ck{p}.{}", next() % 3)));
                    if next() % 4 == 0 {
                        ids.push(Identifier::new(K::CustomerId, format!("C{p}")));
                    }
                }
                "email" => ids.push(Identifier::new(K::Email, format!("p{p}@mail.fr"))),
                "sms" => ids.push(Identifier::new(K::Phone, format!("+336{p:08}"))),
                _ => ids.push(Identifier::new(K::DeviceId, format!("dev-{p}"))),
            }
            if channel == "pos" && next() % 3 == 0 {
                ids.push(Identifier::new(K::Email, format!("p{p}@mail.fr")));
            }
            let at = start + Duration::minutes((i as i64) * 3);
            let mut traits = Traits::default();
            let mut consents = Vec::new();
            if channel == "crm" {
                traits.city = Some(["Lyon", "Paris", "Lille"][p % 3].into());
                if next() % 5 == 0 {
                    consents.push(Consent { channel: ConsentChannel::Sms, granted: next() % 2 == 0, at });
                }
            }
            Observation {
                observation_id: format!("o{i}"),
                channel: channel.into(),
                source_key: format!("{channel}/bench.csv"),
                source_line: i as u64,
                observed_at: at,
                identifiers: ids,
                traits,
                consents,
                activity: vec![],
            }
        })
        .collect()
}

/// (item kind, "put" | "delete" | "check", in a transaction) → (writes, units, bytes).
type WriteTally = BTreeMap<(&'static str, &'static str, bool), (u64, u64, u64)>;

/// Write units by item kind and kind of write, with the metering rules (1 unit per KB,
/// doubled in a transaction; a condition check 1 unit), and the bytes written: where the
/// bill goes.
#[derive(Default)]
struct Breakdown<S> {
    inner: S,
    writes: Mutex<WriteTally>,
    /// Item kind → (items read, read units as if alone, bytes).
    reads: Mutex<BTreeMap<&'static str, (u64, u64, u64)>>,
}

#[async_trait::async_trait]
impl<S: ItemStore> ItemStore for Breakdown<S> {
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        let records = self.inner.get_many(keys).await?;
        let mut reads = self.reads.lock().unwrap();
        for r in &records {
            let size = item_size(&to_attributes(&r.key, r.version, &r.item)) as u64;
            let e = reads.entry(r.key.sk).or_default();
            *e = (e.0 + 1, e.1 + size.div_ceil(4096).max(1), e.2 + size);
        }
        Ok(records)
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let tx = writes.len() > 1;
        let tally: Vec<_> = writes
            .iter()
            .map(|w| {
                let (op, size) = match &w.op {
                    Op::Put(item) | Op::PutAt(item, _) => ("put", item_size(&to_attributes(&w.key, 1, item)) as u64),
                    Op::Delete => ("delete", 0),
                    Op::Check => ("check", 0),
                };
                (w.key.sk, op, size)
            })
            .collect();
        self.inner.commit(writes).await?;
        let mut m = self.writes.lock().unwrap();
        for (sk, op, size) in tally {
            let units = size.div_ceil(1024).max(1) * if tx { 2 } else { 1 };
            let e = m.entry((sk, op, tx)).or_default();
            *e = (e.0 + 1, e.1 + units, e.2 + size);
        }
        Ok(())
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let persons = arg("--persons", 20_000);
    let n = arg("--observations", 400_000);
    // `--first-load 1`: one metered run only (time, memory and the bill of a first load
    // at scale: the other runs would hold two more stores of the same size).
    let first_load_only = arg("--first-load", 0) == 1;
    let batch = 250;
    let obs = mix(persons, n);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rules = Rules::embedded().unwrap();
    if first_load_only {
        let metered = Resolver::new(Metered::new(MemStore::default()), rules);
        let t = Instant::now();
        let mut stats = ariane_identity::resolver::Stats::default();
        rt.block_on(async {
            for chunk in obs.chunks(batch) {
                stats.add(&metered.resolve_batch(chunk).await.unwrap().stats);
            }
        });
        let secs = t.elapsed().as_secs_f64();
        let m = metered.store.meter.reading();
        println!("identity first load: {n} observations of {persons} persons, batches of {batch}, one core, metered in-memory adapter");
        println!("| measure | value |");
        println!("|---|---|");
        println!("| time | {secs:.0} s ({:.0} observations/s) |", n as f64 / secs);
        println!("| peak RSS | {:.0} MB |", peak_rss_mb());
        println!("| evidence unchanged / enriched / structural | {} / {} / {} |", stats.unchanged, stats.enriched, stats.structural);
        println!("| large operations | {} |", stats.large_operations);
        println!("| profiles joined / rebuilt by structural steps | {} / {} |", stats.profiles_joined, stats.profiles_rebuilt);
        println!("| read / write requests | {} / {} |", m.read_requests, m.write_requests);
        println!("| read / write units | {} / {} |", m.read_units, m.write_units);
        println!(
            "| DynamoDB bill (on-demand list prices) | ${:.2} (${:.3} per million observations) |",
            m.dynamodb_usd(),
            m.dynamodb_usd() * 1e6 / n as f64
        );
        return;
    }

    let resolver = Resolver::new(MemStore::default(), rules.clone());
    let t = Instant::now();
    rt.block_on(async {
        for chunk in obs.chunks(batch) {
            resolver.resolve_batch(chunk).await.unwrap();
        }
    });
    let secs = t.elapsed().as_secs_f64();
    // `--speed-only 1`: the timed run alone (for a profiler: the metered runs below
    // serialise every item to count its size).
    if arg("--speed-only", 0) == 1 {
        println!("identity speed: {n} observations of {persons} persons, one core: {:.0} observations/s", n as f64 / secs);
        return;
    }

    let metered = Resolver::new(Metered::new(MemStore::default()), rules);
    let mut stats = ariane_identity::resolver::Stats::default();
    rt.block_on(async {
        for chunk in obs.chunks(batch) {
            stats.add(&metered.resolve_batch(chunk).await.unwrap().stats);
        }
    });
    let m = metered.store.meter.reading();
    let per_m = |x: u64| x as f64 * 1e6 / n as f64;
    println!("identity benchmark: {n} observations of {persons} persons, batches of {batch}, one core");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| observations/s (in-memory adapter) | {:.0} |", n as f64 / secs);
    println!("| evidence unchanged / enriched / structural | {} / {} / {} |", stats.unchanged, stats.enriched, stats.structural);
    println!("| profiles joined / rebuilt by structural steps | {} / {} |", stats.profiles_joined, stats.profiles_rebuilt);
    println!("| read requests per observation | {:.4} |", m.read_requests as f64 / n as f64);
    println!("| write requests per observation | {:.4} |", m.write_requests as f64 / n as f64);
    println!("| read units per million observations | {:.0} |", per_m(m.read_units));
    println!("| write units per million observations | {:.0} |", per_m(m.write_units));
    println!("| USD per million observations (on-demand, $0.625/M WRU, $0.125/M RRU) | {:.3} |", m.dynamodb_usd() * 1e6 / n as f64);

    let breakdown = Resolver::new(Breakdown::<MemStore>::default(), metered.rules.clone());
    rt.block_on(async {
        for chunk in obs.chunks(batch) {
            breakdown.resolve_batch(chunk).await.unwrap();
        }
    });
    println!();
    println!("where the write units go (committed writes; per million observations)");
    println!("| item | write | in a transaction | writes | write units | mean bytes |");
    println!("|---|---|---|---|---|---|");
    for ((sk, op, tx), (count, units, bytes)) in breakdown.store.writes.lock().unwrap().iter() {
        println!("| {sk} | {op} | {tx} | {:.0} | {:.0} | {:.0} |", per_m(*count), per_m(*units), *bytes as f64 / *count as f64);
    }
    println!();
    println!("| item | items read | read units (if alone) | mean bytes |");
    println!("|---|---|---|---|");
    for (sk, (count, units, bytes)) in breakdown.store.reads.lock().unwrap().iter() {
        println!("| {sk} | {:.0} | {:.0} | {:.0} |", per_m(*count), per_m(*units), *bytes as f64 / *count as f64);
    }
}
