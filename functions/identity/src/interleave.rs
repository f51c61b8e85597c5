//! Deterministic interleavings of concurrent resolvers, for tests and soak runs.
//!
//! Each worker's store is wrapped in [`Scheduled`]: every store call waits for its turn,
//! and a turn is given only when every live worker is waiting, to one of them chosen by a
//! generator seeded by the test case. Store calls therefore run one at a time, in an order
//! that is a function of the seed alone (not of thread timing, backoff durations or the
//! runtime), so a failing case replays the same schedule, and the schedule is printed with
//! the failure. Between two of its store calls a worker computes alone, which is exactly
//! the granularity at which resolvers interleave against DynamoDB (each call is one
//! request).
//!
//! With an audit (the rules), the store's invariants ([`crate::audit`]) are checked after
//! every successful commit, from a full listing of the store; the first violation is
//! kept with the commit that caused it, the state before it and the schedule so far.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use ariane_shared::model::Observation;

use crate::audit;
use crate::resolver::{ResolveError, Resolver};
use crate::rules::Rules;
use crate::store::{Expect, Item, ItemStore, Key, Listing, Op, Record, StoreError, Write};

/// One store call of the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub worker: usize,
    /// `read` or `commit`, with the keys (shortened) and, for commits, what each write
    /// expects and does.
    pub call: String,
    /// `ok`, or the error the store returned.
    pub outcome: String,
}

/// The first broken invariant: which commit broke it, and on what.
#[derive(Clone, Debug)]
pub struct Failure {
    pub violation: audit::Violation,
    pub step: usize,
    pub commit: String,
    pub before: Vec<Record>,
}

#[derive(Default)]
struct State {
    rng: u64,
    live: BTreeSet<usize>,
    parked: BTreeMap<usize, (oneshot::Sender<()>, String)>,
    trace: Vec<Step>,
    /// The store's state after the last audited commit (reads and failed commits change
    /// nothing, so it is the state before the next successful commit).
    last: Vec<Record>,
    failure: Option<Failure>,
}

impl State {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, seedable, good enough to pick among a few workers.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Gives the turn to one waiting worker once every live worker waits.
    fn dispatch(&mut self) {
        if self.parked.is_empty() || self.parked.len() != self.live.len() {
            return;
        }
        let pick = (self.next() % self.parked.len() as u64) as usize;
        let worker = *self.parked.keys().nth(pick).expect("pick is in range");
        let (go, call) = self.parked.remove(&worker).expect("parked");
        self.trace.push(Step { worker, call, outcome: "pending".into() });
        // A worker whose future was dropped while waiting just lost its turn.
        let _ = go.send(());
    }
}

/// The turn-giver shared by the workers of one run.
pub struct Scheduler {
    state: Mutex<State>,
    audit: Option<Rules>,
    seed: u64,
    workers: usize,
    /// The workers' [`Resolver::max_transaction_items`].
    transaction_items: usize,
}

impl Scheduler {
    /// A schedule for `workers` workers (numbered from 0), drawn from `seed`. With
    /// `audit`, the invariants are checked after every successful commit.
    pub fn new(seed: u64, workers: usize, audit: Option<Rules>) -> Arc<Scheduler> {
        Scheduler::with_transaction_items(seed, workers, audit, 100)
    }

    /// The same, with workers whose transactions hold at most `items` items: a small
    /// limit sends many steps through the large-operation path ([`crate::intent`]).
    pub fn with_transaction_items(seed: u64, workers: usize, audit: Option<Rules>, items: usize) -> Arc<Scheduler> {
        let state = State { rng: seed ^ 0x9E37_79B9_7F4A_7C15 | 1, live: (0..workers).collect(), ..State::default() };
        Arc::new(Scheduler { state: Mutex::new(state), audit, seed, workers, transaction_items: items })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker that panicked while holding the lock leaves a consistent state (every
        // update is a single assignment or insertion), so poisoning is ignored.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The store of worker `worker`: `inner` behind the scheduler.
    pub fn store<S>(self: &Arc<Self>, worker: usize, inner: Arc<S>) -> Scheduled<S> {
        Scheduled { inner, scheduler: self.clone(), worker }
    }

    /// Held by a worker's task: when dropped (the task ended, even by a panic), the
    /// worker leaves the schedule and the others go on.
    pub fn worker(self: &Arc<Self>, worker: usize) -> WorkerGuard {
        WorkerGuard { scheduler: self.clone(), worker }
    }

    async fn turn(&self, worker: usize, call: String) {
        let (go, wait) = oneshot::channel();
        {
            let mut st = self.lock();
            st.parked.insert(worker, (go, call));
            st.dispatch();
        }
        let _ = wait.await;
    }

    fn outcome<T>(&self, result: &Result<T, StoreError>) {
        if let Some(step) = self.lock().trace.last_mut() {
            step.outcome = match result {
                Ok(_) => "ok".into(),
                Err(e) => e.to_string(),
            };
        }
    }

    /// The store calls so far, in order.
    pub fn trace(&self) -> Vec<Step> {
        self.lock().trace.clone()
    }

    /// The first broken invariant, if any.
    pub fn failure(&self) -> Option<Failure> {
        self.lock().failure.clone()
    }

    /// The schedule as text, one store call per line (the last `tail` calls).
    pub fn describe(&self, tail: usize) -> String {
        let trace = self.trace();
        let mut out = String::new();
        for (i, s) in trace.iter().enumerate().skip(trace.len().saturating_sub(tail)) {
            let _ = writeln!(out, "#{i:<4} worker {} {} -> {}", s.worker, s.call, s.outcome);
        }
        out
    }

    /// A failure as text: the violation, the commit, the state before it and the schedule.
    pub fn report(&self, failure: &Failure) -> String {
        let before: Vec<String> = failure
            .before
            .iter()
            .filter(|r| matches!(r.item, Item::Id(_) | Item::Comp(_) | Item::Profile(_)))
            .map(|r| format!("  {} v{} {:?}", r.key.pk, r.version, r.item))
            .collect();
        format!(
            "after commit #{}, {}\ncommit:\n{}\nstate before it:\n{}\nschedule:\n{}",
            failure.step,
            failure.violation,
            failure.commit,
            before.join("\n"),
            self.describe(usize::MAX)
        )
    }
}

/// See [`Scheduler::worker`].
pub struct WorkerGuard {
    scheduler: Arc<Scheduler>,
    worker: usize,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let mut st = self.scheduler.lock();
        st.live.remove(&self.worker);
        if let Some((go, _)) = st.parked.remove(&self.worker) {
            drop(go);
        }
        st.dispatch();
    }
}

/// A worker's store: each call waits for its turn.
pub struct Scheduled<S> {
    inner: Arc<S>,
    scheduler: Arc<Scheduler>,
    worker: usize,
}

fn short(key: &Key) -> String {
    key.pk.chars().take(20).collect()
}

fn describe_read(keys: &[Key]) -> String {
    let shown: Vec<String> = keys.iter().map(short).collect();
    format!("read [{}]", shown.join(", "))
}

fn describe_commit(writes: &[Write]) -> String {
    let shown: Vec<String> = writes
        .iter()
        .map(|w| {
            let op = match &w.op {
                Op::Put(Item::Comp(c)) => {
                    let keys: Vec<String> = c.evidence.iter().map(|e| e.key.chars().take(8).collect()).collect();
                    format!("put [{}]", keys.join(", "))
                }
                Op::Put(Item::Profile(p)) => format!("put channels={:?}", p.doc.channels),
                Op::Put(Item::Intent(i)) | Op::PutAt(Item::Intent(i), _) => format!("put intent of {} writes", i.writes.len()),
                Op::PutAt(Item::Comp(c), _) => format!("lock {}", c.lock.is_some()),
                Op::Put(_) | Op::PutAt(..) => "put".into(),
                Op::Delete => "delete".into(),
                Op::Check => "check".into(),
            };
            // Versions are random (they differ from run to run): only the kind of
            // condition is shown, so the same seed prints the same schedule.
            let expect = match w.expect {
                Expect::Absent => "if-absent",
                Expect::Version(_) => "if-unchanged",
            };
            format!("{} {expect} {op}", short(&w.key))
        })
        .collect();
    format!("commit {{ {} }}", shown.join("; "))
}

#[async_trait::async_trait]
impl<S: Listing> ItemStore for Scheduled<S> {
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        self.scheduler.turn(self.worker, describe_read(keys)).await;
        let result = self.inner.get_many(keys).await;
        self.scheduler.outcome(&result);
        result
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let call = describe_commit(&writes);
        self.scheduler.turn(self.worker, call.clone()).await;
        let result = self.inner.commit(writes).await;
        self.scheduler.outcome(&result);
        if result.is_ok() {
            if let Some(rules) = &self.scheduler.audit {
                // Still this worker's turn: nobody else touches the store meanwhile.
                let records = self.inner.list_all().await?;
                let mut st = self.scheduler.lock();
                if st.failure.is_none() {
                    if let Err(violation) = audit::check(&records, rules) {
                        let step = st.trace.len() - 1;
                        let before = std::mem::take(&mut st.last);
                        st.failure = Some(Failure { violation, step, commit: call, before });
                    }
                }
                st.last = records;
            }
        }
        result
    }
}

#[async_trait::async_trait]
impl<S: Listing> Listing for Scheduled<S> {
    async fn list_all(&self) -> Result<Vec<Record>, StoreError> {
        self.inner.list_all().await
    }
}

// ---------------------------------------------------------------------------------------
// Cases and runs: the property tests, the soak run and the DynamoDB (moto) test share
// them, so a case found in one replays in the others.

/// One observation of a compact case: `(day, extra, [(kind, value)])`. `day` counts from
/// 2026-01-01; `extra` adds something to join (1: a city, 2: an SMS opt-in, 3: an SMS
/// opt-out); `kind` indexes customer id, email, phone, loyalty card, device, push token,
/// cookie; `value` picks one of a few values, so shared values, limits and attach
/// conflicts are common.
pub type CaseRow = (u8, u8, Vec<(u8, u8)>);

/// The observations of a case; the n-th comes from channel `n mod 5` of pos, ecommerce,
/// crm, web, sms, at second `n` of its day.
pub fn case_observations(rows: &[CaseRow]) -> Vec<Observation> {
    use ariane_shared::identifiers::{Identifier, IdentifierKind as K};
    use ariane_shared::model::{Consent, ConsentChannel, Traits};
    use chrono::{Duration, TimeZone, Utc};
    let kinds = [K::CustomerId, K::Email, K::Phone, K::LoyaltyCard, K::DeviceId, K::PushToken, K::CookieId];
    let epoch = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("a valid instant");
    rows.iter()
        .enumerate()
        .map(|(n, (day, extra, ids))| {
            let identifiers = ids
                .iter()
                .map(|(k, v)| {
                    let kind = kinds[usize::from(*k) % kinds.len()];
                    let value = match kind {
                        K::Email => format!("p{v}@mail.fr"),
                        K::Phone => format!("+3361234560{v}"),
                        _ => format!("{}-{v}", kind.as_str()),
                    };
                    Identifier::new(kind, value)
                })
                .collect();
            let observed_at = epoch + Duration::days(i64::from(*day)) + Duration::seconds(n as i64);
            let mut o = Observation {
                observation_id: format!("o{n}"),
                channel: ["pos", "ecommerce", "crm", "web", "sms"][n % 5].into(),
                source_key: "x/y.csv".into(),
                source_line: n as u64,
                observed_at,
                identifiers,
                traits: Traits::default(),
                consents: vec![],
                activity: vec![],
            };
            match extra {
                1 => o.traits.city = Some(["Lyon", "Lille"][n % 2].into()),
                2 => o.consents.push(Consent { channel: ConsentChannel::Sms, granted: true, at: observed_at }),
                3 => o.consents.push(Consent { channel: ConsentChannel::Sms, granted: false, at: observed_at }),
                _ => {}
            }
            o
        })
        .collect()
}

/// The case of issue 21, found by the concurrent property test on 2026-12-02
/// (proptest's minimal input; seed 4744335698883705179, four workers): a structural step
/// rebuilt the profile of `customer_id-0` from an evidence document read before the
/// profile, after an enrichment had added the `crm` channel to both.
pub fn lost_contribution_case() -> Vec<CaseRow> {
    vec![
        (26, 2, vec![(6, 1)]),
        (17, 3, vec![(0, 2)]),
        (30, 1, vec![(1, 1), (4, 5), (2, 1)]),
        (25, 0, vec![(3, 0)]),
        (19, 2, vec![(6, 3), (4, 2)]),
        (11, 2, vec![(2, 1), (0, 3)]),
        (9, 0, vec![(0, 0)]),
        (31, 0, vec![(0, 0)]),
        (56, 2, vec![(3, 5)]),
        (20, 1, vec![(0, 4), (6, 1), (4, 5)]),
        (19, 2, vec![(2, 0), (3, 5)]),
        (13, 1, vec![(4, 5), (3, 0)]),
        (14, 1, vec![(0, 5), (3, 4)]),
        (52, 0, vec![(6, 4)]),
        (55, 0, vec![(0, 0), (5, 0)]),
    ]
}

/// A schedule of [`lost_contribution_case`] (four workers) under which the resolver
/// before the fix committed that profile without the `crm` contribution.
pub const LOST_CONTRIBUTION_SCHEDULE: u64 = 1;

/// What SQS delivers: every observation, every third one twice, shuffled by `seed`.
pub fn delivery_stream(observations: &[Observation], seed: u64) -> Vec<Observation> {
    let mut stream: Vec<Observation> = observations.to_vec();
    stream.extend(observations.iter().step_by(3).cloned());
    let mut s = seed | 1;
    for i in (1..stream.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        stream.swap(i, (s % (i as u64 + 1)) as usize);
    }
    stream
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Store calls.
    pub steps: usize,
    pub commits: usize,
    /// Commits refused because another worker changed what they were computed from.
    pub conflicts: usize,
    /// Batches given up by the resolver (contended) and delivered again.
    pub redeliveries: usize,
    /// Structural steps applied in chunks (by the worker that started them).
    pub large_operations: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An invariant broke: the report names the commit, the state and the schedule.
    #[error("{0}")]
    Violation(String),
    #[error("worker {worker}: {source}\nschedule (last 60 calls):\n{schedule}")]
    Worker { worker: usize, source: ResolveError, schedule: String },
    #[error("worker {worker} panicked: {message}\nschedule (last 60 calls):\n{schedule}")]
    Panicked { worker: usize, message: String, schedule: String },
}

/// Resolves `stream` with the scheduler's workers over `store`, worker `w` taking every
/// `workers`-th delivery from `w` in batches of `1 + (seed + w) mod 5`, interleaved by
/// the scheduler (and audited after every commit if it audits). A batch still contended
/// after the resolver's own attempts is delivered again, up to four times, as SQS would
/// before the DLQ.
pub async fn run_workers<S: Listing + 'static>(
    scheduler: &Arc<Scheduler>,
    store: Arc<S>,
    rules: &Rules,
    stream: &[Observation],
) -> Result<RunReport, RunError> {
    let (workers, seed) = (scheduler.workers, scheduler.seed);
    let mut handles = Vec::new();
    for w in 0..workers {
        let part: Vec<Observation> = stream.iter().skip(w).step_by(workers).cloned().collect();
        let mut resolver = Resolver::new(scheduler.store(w, store.clone()), rules.clone());
        // The schedule alone decides the order: waiting between attempts changes nothing
        // but the run's duration.
        resolver.backoff = ariane_shared::backoff::Backoff::new(std::time::Duration::ZERO, 0);
        resolver.max_transaction_items = scheduler.transaction_items;
        let guard = scheduler.worker(w);
        let batch = 1 + (seed as usize).wrapping_add(w) % 5;
        handles.push(tokio::spawn(async move {
            let _leaves_the_schedule_when_done = guard;
            let mut redeliveries = 0;
            let mut large = 0;
            for chunk in part.chunks(batch) {
                loop {
                    match resolver.resolve_batch(chunk).await {
                        Ok(out) => {
                            large += out.stats.large_operations;
                            break;
                        }
                        Err(ResolveError::Contended(_)) if redeliveries < 4 => redeliveries += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok((redeliveries, large))
        }));
    }
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.await);
    }
    if let Some(failure) = scheduler.failure() {
        return Err(RunError::Violation(scheduler.report(&failure)));
    }
    let mut report = RunReport::default();
    for (worker, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(Ok((redeliveries, large))) => {
                report.redeliveries += redeliveries;
                report.large_operations += large;
            }
            Ok(Err(source)) => return Err(RunError::Worker { worker, source, schedule: scheduler.describe(60) }),
            Err(e) => return Err(RunError::Panicked { worker, message: e.to_string(), schedule: scheduler.describe(60) }),
        }
    }
    let trace = scheduler.trace();
    report.steps = trace.len();
    report.commits = trace.iter().filter(|s| s.call.starts_with("commit")).count();
    report.conflicts = trace.iter().filter(|s| s.call.starts_with("commit") && s.outcome != "ok").count();
    Ok(report)
}
