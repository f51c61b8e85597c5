//! A local player for AWS Step Functions state machines (Amazon States Language, JSONPath).
//!
//! moto stores state machines but does not run them; this module plays a definition (the
//! `DefinitionString` of an `AWS::StepFunctions::StateMachine`, with its
//! `DefinitionSubstitutions` already applied) with AWS's semantics for the subset the project
//! uses, invoking Lambda tasks through a caller-supplied [`TaskInvoker`].
//!
//! ```no_run
//! # async fn demo(definition: &str, invoker: &dyn ariane_local::states::TaskInvoker) {
//! use ariane_local::states::{execute, Options, StateMachine};
//! let machine = StateMachine::parse(definition).expect("valid definition");
//! let run = execute(&machine, serde_json::json!({}), invoker, &Options::default()).await;
//! match run.output {
//!     Ok(output) => println!("succeeded: {output}"),
//!     Err(failure) => println!("failed in {}: {} ({})", failure.state, failure.error, failure.cause),
//! }
//! # }
//! ```
//!
//! # Supported
//!
//! - States: `Task`, `Pass`, `Choice`, `Wait`, `Succeed`, `Fail` and inline `Map`.
//! - Input/output processing: `InputPath`, `Parameters` (Task/Pass/Map), `ItemSelector` (Map),
//!   `ResultSelector` (Task/Map), `ResultPath` (`null` keeps the input, `$.x.y` creates the
//!   objects on the way), `OutputPath`; `InputPath: null`/`OutputPath: null` give `{}`.
//!   Keys ending in `.$` take a path (`$…` on the effective input, `$$…` on the context
//!   object) or an intrinsic function. Paths: `$`, `$.a.b`, `$.a[0]`, `$['a']`.
//! - Context object: `$$.Execution.{Id,Input,Name,StartTime}`, `$$.StateMachine.{Id,Name}`,
//!   `$$.State.{Name,EnteredTime,RetryCount}`, `$$.Map.Item.{Index,Value}`.
//! - Intrinsics: `States.Format`, `States.Array`, `States.ArrayRange` (inclusive end, at most
//!   1000 items), `States.ArrayLength`, `States.ArrayGetItem`, `States.ArrayContains`,
//!   `States.ArrayPartition`, `States.ArrayUnique`, `States.JsonToString`,
//!   `States.StringToJson`, `States.MathAdd`, `States.StringSplit`; arguments are string
//!   literals (`'…'` with `\'`, `\{`, `\}`, `\\` escapes), numbers, `true`/`false`/`null`,
//!   paths and nested intrinsics.
//! - Task resources: `arn:<partition>:states:::lambda:invoke` (`Parameters.FunctionName` and
//!   `Payload`; the result is `{"ExecutedVersion": "$LATEST", "Payload": <result>,
//!   "StatusCode": 200}`; a missing `Payload` sends `{}`) and a plain
//!   `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]` (the payload is the
//!   effective input, the result is the function's result). The invoker gets the
//!   `FunctionName` (or the plain ARN) exactly as written. `TimeoutSeconds`,
//!   `HeartbeatSeconds` (and their `…Path` forms) are accepted and ignored.
//! - `Retry` (`ErrorEquals`, `IntervalSeconds` = 1, `MaxAttempts` = 3, `BackoffRate` = 2.0,
//!   `MaxDelaySeconds`, `JitterStrategy` accepted and ignored) and `Catch` (`ErrorEquals`,
//!   `Next`, `ResultPath`) on Task and Map. The first retrier whose `ErrorEquals` matches
//!   decides; once its `MaxAttempts` are used up the error goes to the catchers. Attempt
//!   counts are per retrier and per entry into the state. `States.ALL` matches every error
//!   but `States.Runtime`; `States.TaskFailed` matches every error raised by a Task's
//!   function (also when it reaches a Map through a failed iteration).
//! - `Map`: `ItemsPath` (default `$`; a path or an intrinsic), `ItemSelector` (or the legacy
//!   `Parameters`), `ItemProcessor` (or the legacy `Iterator`; `ProcessorConfig.Mode` `INLINE`),
//!   `MaxConcurrency`/`MaxConcurrencyPath` (0 = unlimited; further bounded by
//!   [`Options::max_concurrency_cap`]). Iterations run concurrently on the calling task; the
//!   first failed iteration (after its own retries) fails the Map with that error and cancels
//!   the others; the output lists the iteration outputs in item order.
//! - `Choice` rules: `Variable` with `String{Equals,LessThan,GreaterThan,LessThanEquals,
//!   GreaterThanEquals}[Path]`, `StringMatches`, `Numeric{…}[Path]`, `BooleanEquals[Path]`,
//!   `IsPresent`, `IsNull`, `IsString`, `IsNumeric`, `IsBoolean`; `And`, `Or`, `Not`;
//!   `Default`. No match and no `Default` fails with `States.NoChoiceMatched`.
//! - `Wait` with `Seconds`/`SecondsPath`; `Fail` with `Error`/`Cause`/`ErrorPath`/`CausePath`.
//!
//! All waits (retry intervals and `Wait` states) are multiplied by
//! [`Options::retry_interval_scale`] (1.0 = real seconds, 0.0 in tests).
//!
//! # Rejected at parse time (with the state and field named)
//!
//! `Parallel`, JSONata (`QueryLanguage: JSONata`, `Arguments`, `Output`, `Assign`),
//! `Credentials`, other Task resources (including `.sync`/`.waitForTaskToken` patterns),
//! distributed Map (`ProcessorConfig.Mode: DISTRIBUTED`, `ItemReader`, `ItemBatcher`,
//! `ResultWriter`, `ToleratedFailure*`, `Label`), `Wait` timestamps, `Timestamp*` Choice
//! operators, unknown fields and unknown intrinsics.
//!
//! # Errors at run time
//!
//! A path that does not resolve, a `ResultPath` that cannot be applied, a failing intrinsic or
//! a value of the wrong type fails the execution with `States.Runtime` (never retried nor
//! caught, as on AWS). A single machine (or Map iteration) run stops with `States.Runtime`
//! after 25,000 state transitions (AWS's history limit), so a Choice loop cannot hang.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use serde_json::{json, Map as JsonMap, Value};

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A parsed and validated state machine definition.
#[derive(Debug, Clone)]
pub struct StateMachine {
    name: String,
    root: Scope,
}

/// Why a definition was rejected: where (`state "Map" > "Run", field "Retry[0].MaxAttempts"`)
/// and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub location: String,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid state machine definition: {}: {}", self.location, self.message)
    }
}

impl std::error::Error for DefinitionError {}

/// A failed task invocation: for a Lambda function error, `error` is its `errorType` and
/// `cause` its `errorMessage` (or the whole error document, as AWS does).
#[derive(Debug, Clone)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

/// Invokes the Lambda functions of Task states. `function` is the `FunctionName` of a
/// `lambda:invoke` task, or the plain function ARN of the `Resource`, exactly as written.
pub trait TaskInvoker: Send + Sync {
    fn invoke<'a>(&'a self, function: &'a str, payload: Value) -> BoxFuture<'a, Result<Value, TaskFailure>>;
}

/// How to play an execution.
#[derive(Debug, Clone)]
pub struct Options {
    /// Multiplies every wait (retry intervals, `Wait` states): 1.0 = real seconds, 0.0 = none.
    pub retry_interval_scale: f64,
    /// An upper bound on the concurrency of every Map (on top of its `MaxConcurrency`).
    pub max_concurrency_cap: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options { retry_interval_scale: 1.0, max_concurrency_cap: None }
    }
}

/// The result of [`execute`]: the execution's output or failure, and what happened.
#[derive(Debug, Clone)]
pub struct Execution {
    pub output: Result<Value, ExecutionFailure>,
    pub trace: Vec<TraceEntry>,
}

impl Execution {
    /// The trace entries of `state` (in any Map iteration).
    pub fn entries_of<'a>(&'a self, state: &'a str) -> impl Iterator<Item = &'a TraceEntry> + 'a {
        self.trace.iter().filter(move |e| e.state == state)
    }

    /// Whether `state` was ever entered.
    pub fn entered(&self, state: &str) -> bool {
        self.entries_of(state).any(|e| e.event == TraceEvent::Entered)
    }
}

/// Why an execution failed. `state` is the top-level state that failed (for a failed Map
/// iteration, the Map state); `error`/`cause` come from where the error was raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionFailure {
    pub error: String,
    pub cause: String,
    pub state: String,
}

impl fmt::Display for ExecutionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "execution failed in state {:?}: {}: {}", self.state, self.error, self.cause)
    }
}

impl std::error::Error for ExecutionFailure {}

/// One event of an execution. `map_index` is the index of the innermost Map iteration the
/// state ran in (`None` at the top level).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEntry {
    pub state: String,
    pub map_index: Option<usize>,
    pub event: TraceEvent,
}

/// What happened in a state. Attempts count from 1 per entry into the state.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceEvent {
    Entered,
    /// A Task's function returned.
    TaskSucceeded {
        attempt: u32,
    },
    /// A Task's function failed with `error`.
    TaskFailed {
        attempt: u32,
        error: String,
    },
    /// Attempt `attempt` failed and a retrier matched: the state runs again after `delay_s`
    /// seconds (the delay AWS would wait; the player waits `delay_s * retry_interval_scale`).
    Retrying {
        attempt: u32,
        delay_s: f64,
    },
    /// A catcher matched `error`: the state's output is the error output and the execution
    /// goes on with the catcher's `Next`.
    Caught {
        error: String,
    },
    /// The state failed with `error` (after retries, not caught).
    Failed {
        error: String,
    },
    Exited,
}

impl StateMachine {
    /// Parses and validates a definition: `StartAt` and every `Next`/`Default`/Catch `Next`
    /// name a state of their scope, each Task/Pass/Map/Wait state has exactly one of `Next` and
    /// `End`, paths and intrinsics parse, and no unsupported type or field is used.
    pub fn parse(definition: &str) -> Result<Self, DefinitionError> {
        let value: Value = serde_json::from_str(definition)
            .map_err(|e| DefinitionError { location: "definition".into(), message: format!("not valid JSON: {e}") })?;
        let root = parse_scope(&value, &[], true)?;
        Ok(StateMachine { name: "local".into(), root })
    }

    /// Sets the name used in `$$.StateMachine.Name`/`Id` and `$$.Execution.Id` (default `local`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Every Lambda function a Task (including inside Maps) invokes: the `FunctionName` of
    /// `lambda:invoke` tasks (a dynamic `FunctionName.$` cannot be listed) and the plain
    /// function ARNs, sorted and without duplicates.
    pub fn lambda_functions(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        collect_functions(&self.root, &mut out);
        out.into_iter().collect()
    }
}

/// Plays `machine` on `input`. Never panics on bad input: failures end up in
/// [`Execution::output`].
pub async fn execute(machine: &StateMachine, input: Value, invoker: &dyn TaskInvoker, options: &Options) -> Execution {
    let execution_name = next_execution_name();
    let machine_arn = format!("arn:aws:states:us-east-1:123456789012:stateMachine:{}", machine.name);
    let execution = json!({
        "Id": format!("arn:aws:states:us-east-1:123456789012:execution:{}:{}", machine.name, execution_name),
        "Input": input.clone(),
        "Name": execution_name,
        "StartTime": now_iso(),
        "RoleArn": "arn:aws:iam::123456789012:role/local",
    });
    let runner = Runner {
        invoker,
        scale: if options.retry_interval_scale.is_finite() && options.retry_interval_scale > 0.0 {
            options.retry_interval_scale
        } else {
            0.0
        },
        cap: options.max_concurrency_cap,
        execution,
        state_machine: json!({ "Id": machine_arn, "Name": machine.name }),
        trace: Mutex::new(Vec::new()),
    };
    let result = runner.run_scope(&machine.root, input, None).await;
    let trace = runner.trace.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    Execution { output: result.map_err(|f| ExecutionFailure { error: f.error, cause: f.cause, state: f.state }), trace }
}

// ---------------------------------------------------------------------------------------------
// Definition model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Scope {
    start_at: String,
    states: HashMap<String, State>,
}

#[derive(Debug, Clone)]
struct State {
    name: String,
    kind: Kind,
    input_path: Sel,
    output_path: Sel,
    next: Option<String>,
    retry: Vec<Retrier>,
    catch: Vec<Catcher>,
}

#[derive(Debug, Clone)]
enum Kind {
    Task(Box<TaskState>),
    Pass(Box<PassState>),
    Choice(Box<ChoiceState>),
    Wait(WaitSeconds),
    Succeed,
    Fail(Box<FailState>),
    Map(Box<MapState>),
}

/// `InputPath`/`OutputPath`: absent = `$`, `null` = `{}`.
#[derive(Debug, Clone)]
enum Sel {
    All,
    Discard,
    Path(Path),
}

/// `ResultPath`: absent = `$`, `null` = keep the input.
#[derive(Debug, Clone)]
enum ResultPath {
    Discard,
    Path(Path),
}

#[derive(Debug, Clone)]
struct TaskState {
    target: Target,
    parameters: Option<Template>,
    result_selector: Option<Template>,
    result_path: ResultPath,
}

#[derive(Debug, Clone)]
enum Target {
    /// `arn:aws:states:::lambda:invoke`; the static `FunctionName` if any.
    LambdaInvoke { function: Option<String> },
    /// A plain function ARN.
    Function(String),
}

#[derive(Debug, Clone)]
struct PassState {
    result: Option<Value>,
    parameters: Option<Template>,
    result_path: ResultPath,
}

#[derive(Debug, Clone)]
struct ChoiceState {
    choices: Vec<(Rule, String)>,
    default: Option<String>,
}

#[derive(Debug, Clone)]
enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Compare { variable: Path, op: Op, operand: Operand },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    StrEq,
    StrLt,
    StrGt,
    StrLe,
    StrGe,
    StrMatches,
    NumEq,
    NumLt,
    NumGt,
    NumLe,
    NumGe,
    BoolEq,
    IsPresent,
    IsNull,
    IsString,
    IsNumeric,
    IsBoolean,
}

#[derive(Debug, Clone)]
enum Operand {
    Value(Value),
    Path(Path),
}

#[derive(Debug, Clone)]
enum WaitSeconds {
    Fixed(u64),
    Path(Expr),
}

#[derive(Debug, Clone)]
struct FailState {
    error: Option<StrSource>,
    cause: Option<StrSource>,
}

#[derive(Debug, Clone)]
enum StrSource {
    Literal(String),
    Expr(Expr),
}

#[derive(Debug, Clone)]
struct MapState {
    items: Option<Expr>,
    item_selector: Option<Template>,
    processor: Scope,
    max_concurrency: Concurrency,
    result_selector: Option<Template>,
    result_path: ResultPath,
}

#[derive(Debug, Clone)]
enum Concurrency {
    Fixed(usize),
    Path(Path),
}

#[derive(Debug, Clone)]
struct Retrier {
    errors: Vec<String>,
    interval: f64,
    max_attempts: u32,
    backoff: f64,
    max_delay: Option<f64>,
}

#[derive(Debug, Clone)]
struct Catcher {
    errors: Vec<String>,
    next: String,
    result_path: ResultPath,
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

fn location(scope: &[String], field: &str) -> String {
    let mut out = String::new();
    if scope.is_empty() {
        out.push_str("definition");
    } else {
        out.push_str("state ");
        out.push_str(&scope.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" > "));
    }
    if !field.is_empty() {
        out.push_str(&format!(", field {field:?}"));
    }
    out
}

fn def_err(scope: &[String], field: &str, message: impl Into<String>) -> DefinitionError {
    DefinitionError { location: location(scope, field), message: message.into() }
}

/// Parses a machine (`top`) or a Map processor; `scope` names the enclosing Map states.
fn parse_scope(value: &Value, scope: &[String], top: bool) -> Result<Scope, DefinitionError> {
    let obj = value.as_object().ok_or_else(|| def_err(scope, "", "expected a JSON object with StartAt and States"))?;
    for (key, v) in obj {
        match key.as_str() {
            "StartAt" | "States" | "Comment" => {}
            "Version" | "TimeoutSeconds" if top => {}
            "QueryLanguage" if top => {
                if v.as_str() != Some("JSONPath") {
                    return Err(def_err(scope, key, "only QueryLanguage \"JSONPath\" is supported by the local player"));
                }
            }
            "ProcessorConfig" if !top => {
                let config = v.as_object().ok_or_else(|| def_err(scope, key, "expected an object"))?;
                for (k, mode) in config {
                    match k.as_str() {
                        "Mode" => match mode.as_str() {
                            Some("INLINE") => {}
                            Some("DISTRIBUTED") => {
                                return Err(def_err(scope, "ProcessorConfig.Mode", "distributed Map is not supported by the local player"))
                            }
                            _ => return Err(def_err(scope, "ProcessorConfig.Mode", "expected \"INLINE\"")),
                        },
                        other => {
                            return Err(def_err(scope, &format!("ProcessorConfig.{other}"), "not supported by the local player"));
                        }
                    }
                }
            }
            _ => return Err(def_err(scope, key, "unknown or unsupported field")),
        }
    }
    let start_at = obj
        .get("StartAt")
        .ok_or_else(|| def_err(scope, "StartAt", "missing"))?
        .as_str()
        .ok_or_else(|| def_err(scope, "StartAt", "expected a string"))?
        .to_string();
    let states_obj = obj
        .get("States")
        .ok_or_else(|| def_err(scope, "States", "missing"))?
        .as_object()
        .ok_or_else(|| def_err(scope, "States", "expected an object"))?;
    if states_obj.is_empty() {
        return Err(def_err(scope, "States", "no states"));
    }
    let mut states = HashMap::new();
    for (name, body) in states_obj {
        let mut path = scope.to_vec();
        path.push(name.clone());
        let state = parse_state(name, body, &path)?;
        states.insert(name.clone(), state);
    }
    if !states.contains_key(&start_at) {
        return Err(def_err(scope, "StartAt", format!("names no state: {start_at:?}")));
    }
    // Every transition names a state of this scope.
    for state in states.values() {
        let mut path = scope.to_vec();
        path.push(state.name.clone());
        let check = |field: &str, target: &str| {
            if states.contains_key(target) {
                Ok(())
            } else {
                Err(def_err(&path, field, format!("names no state of its scope: {target:?}")))
            }
        };
        if let Some(next) = &state.next {
            check("Next", next)?;
        }
        for (i, catcher) in state.catch.iter().enumerate() {
            check(&format!("Catch[{i}].Next"), &catcher.next)?;
        }
        if let Kind::Choice(choice) = &state.kind {
            for (i, (_, next)) in choice.choices.iter().enumerate() {
                check(&format!("Choices[{i}].Next"), next)?;
            }
            if let Some(default) = &choice.default {
                check("Default", default)?;
            }
        }
    }
    Ok(Scope { start_at, states })
}

const UNSUPPORTED_FIELDS: &[&str] = &[
    "Arguments",
    "Output",
    "Assign",
    "QueryLanguage",
    "Credentials",
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
    "Label",
    "Timestamp",
    "TimestampPath",
    "Branches",
];

fn parse_state(name: &str, body: &Value, path: &[String]) -> Result<State, DefinitionError> {
    let obj = body.as_object().ok_or_else(|| def_err(path, "", "expected a JSON object"))?;
    let ty = obj
        .get("Type")
        .ok_or_else(|| def_err(path, "Type", "missing"))?
        .as_str()
        .ok_or_else(|| def_err(path, "Type", "expected a string"))?;
    let allowed: &[&str] = match ty {
        "Task" => &[
            "Resource",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultPath",
            "ResultSelector",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
        ],
        "Pass" => &["Next", "End", "InputPath", "OutputPath", "Parameters", "Result", "ResultPath"],
        "Choice" => &["Choices", "Default", "InputPath", "OutputPath"],
        "Wait" => &["Seconds", "SecondsPath", "Next", "End", "InputPath", "OutputPath"],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "Cause", "ErrorPath", "CausePath"],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ItemsPath",
            "ItemSelector",
            "Parameters",
            "ItemProcessor",
            "Iterator",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
        ],
        "Parallel" => return Err(def_err(path, "Type", "state type \"Parallel\" is not supported by the local player")),
        other => return Err(def_err(path, "Type", format!("unknown state type {other:?}"))),
    };
    for key in obj.keys() {
        if key == "Type" || key == "Comment" || allowed.contains(&key.as_str()) {
            continue;
        }
        if key == "QueryLanguage" && obj.get(key).and_then(Value::as_str) == Some("JSONPath") {
            continue;
        }
        if UNSUPPORTED_FIELDS.contains(&key.as_str()) {
            return Err(def_err(path, key, format!("not supported by the local player in a {ty} state")));
        }
        return Err(def_err(path, key, format!("unknown field for a {ty} state")));
    }

    let input_path = parse_sel(obj, "InputPath", path)?;
    let output_path = parse_sel(obj, "OutputPath", path)?;
    let transitions = matches!(ty, "Task" | "Pass" | "Map" | "Wait");
    let next = if transitions {
        let next = match obj.get("Next") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(def_err(path, "Next", "expected a state name")),
        };
        let end = match obj.get("End") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(def_err(path, "End", "expected true")),
        };
        match (&next, end) {
            (Some(_), true) => return Err(def_err(path, "Next", "a state cannot have both Next and End")),
            (None, false) => return Err(def_err(path, "Next", "a non-terminal state needs Next or \"End\": true")),
            _ => {}
        }
        next
    } else {
        None
    };
    let (retry, catch) = if matches!(ty, "Task" | "Map") {
        (parse_retry(obj.get("Retry"), path)?, parse_catch(obj.get("Catch"), path)?)
    } else {
        (Vec::new(), Vec::new())
    };

    let kind = match ty {
        "Task" => Kind::Task(Box::new(parse_task(obj, path)?)),
        "Pass" => Kind::Pass(Box::new(PassState {
            result: obj.get("Result").cloned(),
            parameters: opt_template(obj, "Parameters", path)?,
            result_path: parse_result_path(obj.get("ResultPath"), path, "ResultPath")?,
        })),
        "Choice" => Kind::Choice(Box::new(parse_choice(obj, path)?)),
        "Wait" => Kind::Wait(match (obj.get("Seconds"), obj.get("SecondsPath")) {
            (Some(v), None) => WaitSeconds::Fixed(v.as_u64().ok_or_else(|| def_err(path, "Seconds", "expected a non-negative integer"))?),
            (None, Some(v)) => WaitSeconds::Path(parse_expr_field(v, path, "SecondsPath")?),
            _ => return Err(def_err(path, "Seconds", "a Wait state needs exactly one of Seconds and SecondsPath")),
        }),
        "Succeed" => Kind::Succeed,
        "Fail" => {
            let source = |lit: &str, p: &str| -> Result<Option<StrSource>, DefinitionError> {
                match (obj.get(lit), obj.get(p)) {
                    (Some(_), Some(_)) => Err(def_err(path, p, format!("cannot have both {lit} and {p}"))),
                    (Some(v), None) => {
                        Ok(Some(StrSource::Literal(v.as_str().ok_or_else(|| def_err(path, lit, "expected a string"))?.to_string())))
                    }
                    (None, Some(v)) => Ok(Some(StrSource::Expr(parse_expr_field(v, path, p)?))),
                    (None, None) => Ok(None),
                }
            };
            Kind::Fail(Box::new(FailState { error: source("Error", "ErrorPath")?, cause: source("Cause", "CausePath")? }))
        }
        "Map" => Kind::Map(Box::new(parse_map(obj, path)?)),
        _ => return Err(def_err(path, "Type", format!("unknown state type {ty:?}"))),
    };
    Ok(State { name: name.to_string(), kind, input_path, output_path, next, retry, catch })
}

fn parse_sel(obj: &JsonMap<String, Value>, field: &str, path: &[String]) -> Result<Sel, DefinitionError> {
    match obj.get(field) {
        None => Ok(Sel::All),
        Some(Value::Null) => Ok(Sel::Discard),
        Some(Value::String(s)) => {
            let p = Path::parse(s).map_err(|e| def_err(path, field, e))?;
            Ok(if p.is_root() { Sel::All } else { Sel::Path(p) })
        }
        Some(_) => Err(def_err(path, field, "expected a path or null")),
    }
}

fn parse_result_path(value: Option<&Value>, path: &[String], field: &str) -> Result<ResultPath, DefinitionError> {
    match value {
        None => Ok(ResultPath::Path(Path::root())),
        Some(Value::Null) => Ok(ResultPath::Discard),
        Some(Value::String(s)) => {
            let p = Path::parse(s).map_err(|e| def_err(path, field, e))?;
            if p.context {
                return Err(def_err(path, field, "a ResultPath cannot refer to the context object"));
            }
            Ok(ResultPath::Path(p))
        }
        Some(_) => Err(def_err(path, field, "expected a path or null")),
    }
}

fn opt_template(obj: &JsonMap<String, Value>, field: &str, path: &[String]) -> Result<Option<Template>, DefinitionError> {
    match obj.get(field) {
        None => Ok(None),
        Some(v) => Template::compile(v).map(Some).map_err(|e| def_err(path, field, e)),
    }
}

fn parse_expr_field(value: &Value, path: &[String], field: &str) -> Result<Expr, DefinitionError> {
    let s = value.as_str().ok_or_else(|| def_err(path, field, "expected a path"))?;
    Expr::parse(s).map_err(|e| def_err(path, field, e))
}

fn parse_task(obj: &JsonMap<String, Value>, path: &[String]) -> Result<TaskState, DefinitionError> {
    let resource = obj
        .get("Resource")
        .ok_or_else(|| def_err(path, "Resource", "missing"))?
        .as_str()
        .ok_or_else(|| def_err(path, "Resource", "expected a string"))?;
    for field in ["TimeoutSeconds", "HeartbeatSeconds"] {
        if let Some(v) = obj.get(field) {
            if v.as_u64().is_none_or(|n| n == 0) {
                return Err(def_err(path, field, "expected a positive integer"));
            }
        }
    }
    for field in ["TimeoutSecondsPath", "HeartbeatSecondsPath"] {
        if let Some(v) = obj.get(field) {
            let s = v.as_str().ok_or_else(|| def_err(path, field, "expected a path"))?;
            Path::parse(s).map_err(|e| def_err(path, field, e))?;
        }
    }
    let parts: Vec<&str> = resource.split(':').collect();
    let parameters = opt_template(obj, "Parameters", path)?;
    let target = if parts.len() == 7 && parts[0] == "arn" && parts[2] == "states" && parts[5] == "lambda" && parts[6] == "invoke" {
        let params = obj
            .get("Parameters")
            .and_then(Value::as_object)
            .ok_or_else(|| def_err(path, "Parameters", "a lambda:invoke task needs Parameters with FunctionName"))?;
        let mut function = None;
        let mut has_function = false;
        for (key, v) in params {
            match key.as_str() {
                "FunctionName" => {
                    has_function = true;
                    function = Some(v.as_str().ok_or_else(|| def_err(path, "Parameters.FunctionName", "expected a string"))?.to_string());
                }
                "FunctionName.$" => has_function = true,
                "Payload" | "Payload.$" => {}
                other => {
                    return Err(def_err(path, &format!("Parameters.{other}"), "not supported by the local player for lambda:invoke"));
                }
            }
        }
        if !has_function {
            return Err(def_err(path, "Parameters.FunctionName", "missing"));
        }
        Target::LambdaInvoke { function }
    } else if (parts.len() == 7 || parts.len() == 8)
        && parts[0] == "arn"
        && parts[2] == "lambda"
        && parts[5] == "function"
        && !parts[6].is_empty()
    {
        Target::Function(resource.to_string())
    } else {
        return Err(def_err(
            path,
            "Resource",
            format!(
                "unsupported resource {resource:?}: the local player runs arn:aws:states:::lambda:invoke and \
                 arn:aws:lambda:<region>:<account>:function:<name> tasks"
            ),
        ));
    };
    Ok(TaskState {
        target,
        parameters,
        result_selector: opt_template(obj, "ResultSelector", path)?,
        result_path: parse_result_path(obj.get("ResultPath"), path, "ResultPath")?,
    })
}

fn parse_map(obj: &JsonMap<String, Value>, path: &[String]) -> Result<MapState, DefinitionError> {
    let processor = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
        (Some(p), None) | (None, Some(p)) => p,
        (Some(_), Some(_)) => return Err(def_err(path, "Iterator", "cannot have both ItemProcessor and Iterator")),
        (None, None) => return Err(def_err(path, "ItemProcessor", "missing")),
    };
    let processor = parse_scope(processor, path, false)?;
    let item_selector = match (obj.get("ItemSelector"), obj.get("Parameters")) {
        (Some(_), Some(_)) => return Err(def_err(path, "Parameters", "cannot have both ItemSelector and Parameters")),
        (Some(_), None) => opt_template(obj, "ItemSelector", path)?,
        (None, Some(_)) => opt_template(obj, "Parameters", path)?,
        (None, None) => None,
    };
    let max_concurrency = match (obj.get("MaxConcurrency"), obj.get("MaxConcurrencyPath")) {
        (Some(_), Some(_)) => return Err(def_err(path, "MaxConcurrencyPath", "cannot have both MaxConcurrency and MaxConcurrencyPath")),
        (Some(v), None) => {
            let n = v.as_u64().ok_or_else(|| def_err(path, "MaxConcurrency", "expected a non-negative integer"))?;
            Concurrency::Fixed(usize::try_from(n).unwrap_or(0))
        }
        (None, Some(v)) => {
            let s = v.as_str().ok_or_else(|| def_err(path, "MaxConcurrencyPath", "expected a path"))?;
            Concurrency::Path(Path::parse(s).map_err(|e| def_err(path, "MaxConcurrencyPath", e))?)
        }
        (None, None) => Concurrency::Fixed(0),
    };
    Ok(MapState {
        items: match obj.get("ItemsPath") {
            None => None,
            Some(v) => Some(parse_expr_field(v, path, "ItemsPath")?),
        },
        item_selector,
        processor,
        max_concurrency,
        result_selector: opt_template(obj, "ResultSelector", path)?,
        result_path: parse_result_path(obj.get("ResultPath"), path, "ResultPath")?,
    })
}

fn parse_error_equals(value: Option<&Value>, path: &[String], field: &str) -> Result<Vec<String>, DefinitionError> {
    let field = format!("{field}.ErrorEquals");
    let list =
        value.ok_or_else(|| def_err(path, &field, "missing"))?.as_array().ok_or_else(|| def_err(path, &field, "expected an array"))?;
    if list.is_empty() {
        return Err(def_err(path, &field, "must not be empty"));
    }
    let names = list
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| def_err(path, &field, "expected error names")))
        .collect::<Result<Vec<_>, _>>()?;
    if names.len() > 1 && names.iter().any(|n| n == "States.ALL") {
        return Err(def_err(path, &field, "States.ALL must appear alone"));
    }
    Ok(names)
}

fn parse_retry(value: Option<&Value>, path: &[String]) -> Result<Vec<Retrier>, DefinitionError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let list = value.as_array().ok_or_else(|| def_err(path, "Retry", "expected an array"))?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let field = format!("Retry[{i}]");
        let obj = item.as_object().ok_or_else(|| def_err(path, &field, "expected an object"))?;
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "ErrorEquals" | "IntervalSeconds" | "MaxAttempts" | "BackoffRate" | "MaxDelaySeconds" | "JitterStrategy" | "Comment"
            ) {
                return Err(def_err(path, &format!("{field}.{key}"), "unknown field for a retrier"));
            }
        }
        let errors = parse_error_equals(obj.get("ErrorEquals"), path, &field)?;
        if errors.iter().any(|e| e == "States.ALL") && i + 1 != list.len() {
            return Err(def_err(path, &format!("{field}.ErrorEquals"), "States.ALL must be in the last retrier"));
        }
        let positive_int = |key: &str| -> Result<Option<f64>, DefinitionError> {
            match obj.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => Ok(Some(n as f64)),
                    _ => Err(def_err(path, &format!("{field}.{key}"), "expected a positive integer")),
                },
            }
        };
        let interval = positive_int("IntervalSeconds")?.unwrap_or(1.0);
        let max_delay = positive_int("MaxDelaySeconds")?;
        let max_attempts = match obj.get("MaxAttempts") {
            None => 3,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| def_err(path, &format!("{field}.MaxAttempts"), "expected a non-negative integer"))?,
        };
        let backoff = match obj.get("BackoffRate") {
            None => 2.0,
            Some(v) => match v.as_f64() {
                Some(b) if b >= 1.0 && b.is_finite() => b,
                _ => return Err(def_err(path, &format!("{field}.BackoffRate"), "expected a number >= 1.0")),
            },
        };
        if let Some(j) = obj.get("JitterStrategy") {
            if !matches!(j.as_str(), Some("FULL") | Some("NONE")) {
                return Err(def_err(path, &format!("{field}.JitterStrategy"), "expected \"FULL\" or \"NONE\""));
            }
        }
        out.push(Retrier { errors, interval, max_attempts, backoff, max_delay });
    }
    Ok(out)
}

fn parse_catch(value: Option<&Value>, path: &[String]) -> Result<Vec<Catcher>, DefinitionError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let list = value.as_array().ok_or_else(|| def_err(path, "Catch", "expected an array"))?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let field = format!("Catch[{i}]");
        let obj = item.as_object().ok_or_else(|| def_err(path, &field, "expected an object"))?;
        for key in obj.keys() {
            if !matches!(key.as_str(), "ErrorEquals" | "Next" | "ResultPath" | "Comment") {
                let message =
                    if key == "Output" || key == "Assign" { "not supported by the local player" } else { "unknown field for a catcher" };
                return Err(def_err(path, &format!("{field}.{key}"), message));
            }
        }
        let errors = parse_error_equals(obj.get("ErrorEquals"), path, &field)?;
        if errors.iter().any(|e| e == "States.ALL") && i + 1 != list.len() {
            return Err(def_err(path, &format!("{field}.ErrorEquals"), "States.ALL must be in the last catcher"));
        }
        let next = obj
            .get("Next")
            .ok_or_else(|| def_err(path, &format!("{field}.Next"), "missing"))?
            .as_str()
            .ok_or_else(|| def_err(path, &format!("{field}.Next"), "expected a state name"))?
            .to_string();
        let result_path = parse_result_path(obj.get("ResultPath"), path, &format!("{field}.ResultPath"))?;
        out.push(Catcher { errors, next, result_path });
    }
    Ok(out)
}

fn parse_choice(obj: &JsonMap<String, Value>, path: &[String]) -> Result<ChoiceState, DefinitionError> {
    let list = obj
        .get("Choices")
        .ok_or_else(|| def_err(path, "Choices", "missing"))?
        .as_array()
        .ok_or_else(|| def_err(path, "Choices", "expected an array"))?;
    if list.is_empty() {
        return Err(def_err(path, "Choices", "must not be empty"));
    }
    let mut choices = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let field = format!("Choices[{i}]");
        let rule = parse_rule(item, path, &field, true)?;
        let next = item
            .get("Next")
            .ok_or_else(|| def_err(path, &format!("{field}.Next"), "missing"))?
            .as_str()
            .ok_or_else(|| def_err(path, &format!("{field}.Next"), "expected a state name"))?
            .to_string();
        choices.push((rule, next));
    }
    let default = match obj.get("Default") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(def_err(path, "Default", "expected a state name")),
    };
    Ok(ChoiceState { choices, default })
}

fn parse_rule(value: &Value, path: &[String], field: &str, top: bool) -> Result<Rule, DefinitionError> {
    let obj = value.as_object().ok_or_else(|| def_err(path, field, "expected a choice rule object"))?;
    let sub = |k: &str| format!("{field}.{k}");
    let mut rule = None;
    let mut variable = None;
    for (key, v) in obj {
        match key.as_str() {
            "Comment" => {}
            "Next" if top => {}
            "Next" => return Err(def_err(path, &sub(key), "only top-level choice rules have Next")),
            "Variable" => {
                let s = v.as_str().ok_or_else(|| def_err(path, &sub(key), "expected a path"))?;
                variable = Some(Path::parse(s).map_err(|e| def_err(path, &sub(key), e))?);
            }
            "And" | "Or" => {
                let list = v.as_array().ok_or_else(|| def_err(path, &sub(key), "expected an array of rules"))?;
                if list.is_empty() {
                    return Err(def_err(path, &sub(key), "must not be empty"));
                }
                let rules = list
                    .iter()
                    .enumerate()
                    .map(|(j, r)| parse_rule(r, path, &format!("{field}.{key}[{j}]"), false))
                    .collect::<Result<Vec<_>, _>>()?;
                set_once(&mut rule, if key == "And" { Rule::And(rules) } else { Rule::Or(rules) }, path, &sub(key))?;
            }
            "Not" => {
                let inner = parse_rule(v, path, &sub(key), false)?;
                set_once(&mut rule, Rule::Not(Box::new(inner)), path, &sub(key))?;
            }
            op_name => {
                let Some((op, by_path)) = comparison(op_name) else {
                    let message = if op_name.starts_with("Timestamp") {
                        "timestamp comparisons are not supported by the local player"
                    } else {
                        "unknown or unsupported field for a choice rule"
                    };
                    return Err(def_err(path, &sub(key), message));
                };
                let operand = if by_path {
                    let s = v.as_str().ok_or_else(|| def_err(path, &sub(key), "expected a path"))?;
                    Operand::Path(Path::parse(s).map_err(|e| def_err(path, &sub(key), e))?)
                } else {
                    let ok = match op {
                        Op::StrEq | Op::StrLt | Op::StrGt | Op::StrLe | Op::StrGe | Op::StrMatches => v.is_string(),
                        Op::NumEq | Op::NumLt | Op::NumGt | Op::NumLe | Op::NumGe => v.is_number(),
                        _ => v.is_boolean(),
                    };
                    if !ok {
                        return Err(def_err(path, &sub(key), "operand of the wrong type"));
                    }
                    Operand::Value(v.clone())
                };
                // The variable is filled in below.
                set_once(&mut rule, Rule::Compare { variable: Path::root(), op, operand }, path, &sub(key))?;
            }
        }
    }
    let mut rule = rule.ok_or_else(|| def_err(path, field, "a choice rule needs a comparison, And, Or or Not"))?;
    match (&mut rule, variable) {
        (Rule::Compare { variable: slot, .. }, Some(v)) => *slot = v,
        (Rule::Compare { .. }, None) => return Err(def_err(path, &sub("Variable"), "missing")),
        (_, Some(_)) => return Err(def_err(path, &sub("Variable"), "not allowed with And/Or/Not")),
        (_, None) => {}
    }
    Ok(rule)
}

fn set_once(slot: &mut Option<Rule>, rule: Rule, path: &[String], field: &str) -> Result<(), DefinitionError> {
    if slot.is_some() {
        return Err(def_err(path, field, "a choice rule has exactly one comparison, And, Or or Not"));
    }
    *slot = Some(rule);
    Ok(())
}

fn comparison(name: &str) -> Option<(Op, bool)> {
    let (base, by_path) = match name.strip_suffix("Path") {
        Some(base) if base != "Is" => (base, true),
        _ => (name, false),
    };
    let op = match base {
        "StringEquals" => Op::StrEq,
        "StringLessThan" => Op::StrLt,
        "StringGreaterThan" => Op::StrGt,
        "StringLessThanEquals" => Op::StrLe,
        "StringGreaterThanEquals" => Op::StrGe,
        "StringMatches" if !by_path => Op::StrMatches,
        "NumericEquals" => Op::NumEq,
        "NumericLessThan" => Op::NumLt,
        "NumericGreaterThan" => Op::NumGt,
        "NumericLessThanEquals" => Op::NumLe,
        "NumericGreaterThanEquals" => Op::NumGe,
        "BooleanEquals" => Op::BoolEq,
        "IsPresent" if !by_path => Op::IsPresent,
        "IsNull" if !by_path => Op::IsNull,
        "IsString" if !by_path => Op::IsString,
        "IsNumeric" if !by_path => Op::IsNumeric,
        "IsBoolean" if !by_path => Op::IsBoolean,
        _ => return None,
    };
    Some((op, by_path))
}

fn collect_functions(scope: &Scope, out: &mut BTreeSet<String>) {
    for state in scope.states.values() {
        match &state.kind {
            Kind::Task(task) => match &task.target {
                Target::LambdaInvoke { function: Some(f) } | Target::Function(f) => {
                    out.insert(f.clone());
                }
                Target::LambdaInvoke { function: None } => {}
            },
            Kind::Map(map) => collect_functions(&map.processor, out),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A JSONPath subset: `$`, `$.a.b`, `$.a[0]`, `$['a']`, or the same on `$$` (the context).
#[derive(Debug, Clone)]
struct Path {
    context: bool,
    segs: Vec<Seg>,
    text: String,
}

impl Path {
    fn root() -> Path {
        Path { context: false, segs: Vec::new(), text: "$".into() }
    }

    fn is_root(&self) -> bool {
        !self.context && self.segs.is_empty()
    }

    fn parse(text: &str) -> Result<Path, String> {
        let bad = |why: &str| format!("invalid path {text:?}: {why}");
        let (context, rest) = if let Some(rest) = text.strip_prefix("$$") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix('$') {
            (false, rest)
        } else {
            return Err(bad("a path starts with $"));
        };
        let chars: Vec<char> = rest.chars().collect();
        let mut segs = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    i += 1;
                    let start = i;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        if matches!(chars[i], ']' | '*' | '@' | '?' | '(' | ')' | ',' | ':' | '\'' | '"') || chars[i].is_whitespace() {
                            return Err(bad("only plain field names, [n] and ['name'] are supported (no wildcards, filters or slices)"));
                        }
                        i += 1;
                    }
                    if start == i {
                        return Err(bad("empty field name (recursive descent is not supported)"));
                    }
                    segs.push(Seg::Key(chars[start..i].iter().collect()));
                }
                '[' => {
                    i += 1;
                    if i < chars.len() && (chars[i] == '\'' || chars[i] == '"') {
                        let quote = chars[i];
                        i += 1;
                        let start = i;
                        while i < chars.len() && chars[i] != quote {
                            i += 1;
                        }
                        if i + 1 >= chars.len() || chars[i + 1] != ']' {
                            return Err(bad("unterminated ['name']"));
                        }
                        segs.push(Seg::Key(chars[start..i].iter().collect()));
                        i += 2;
                    } else {
                        let start = i;
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            i += 1;
                        }
                        if start == i || i >= chars.len() || chars[i] != ']' {
                            return Err(bad("only non-negative indexes [n] are supported"));
                        }
                        let digits: String = chars[start..i].iter().collect();
                        let index = digits.parse::<usize>().map_err(|_| bad("index too large"))?;
                        segs.push(Seg::Index(index));
                        i += 1;
                    }
                }
                _ => return Err(bad("expected . or [ after $")),
            }
        }
        Ok(Path { context, segs, text: text.to_string() })
    }

    fn get<'v>(&self, input: &'v Value, ctx: &'v Value) -> Option<&'v Value> {
        let mut cur = if self.context { ctx } else { input };
        for seg in &self.segs {
            cur = match (seg, cur) {
                (Seg::Key(k), Value::Object(map)) => map.get(k)?,
                (Seg::Index(i), Value::Array(list)) => list.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    fn resolve(&self, input: &Value, ctx: &Value) -> Result<Value, String> {
        self.get(input, ctx).cloned().ok_or_else(|| format!("The JSONPath '{}' could not be found in the input", self.text))
    }
}

/// Applies a `ResultPath` to `input`.
fn apply_result_path(input: &Value, result_path: &ResultPath, result: Value) -> Result<Value, String> {
    let path = match result_path {
        ResultPath::Discard => return Ok(input.clone()),
        ResultPath::Path(p) => p,
    };
    if path.segs.is_empty() {
        return Ok(result);
    }
    let mut out = input.clone();
    let mut cur = &mut out;
    let last = path.segs.len() - 1;
    for (n, seg) in path.segs.iter().enumerate() {
        let fail = || format!("Unable to apply ResultPath '{}' to the state's input", path.text);
        cur = match seg {
            Seg::Key(k) => {
                let Value::Object(map) = cur else { return Err(fail()) };
                if n == last {
                    map.insert(k.clone(), result);
                    return Ok(out);
                }
                let entry = map.entry(k.clone()).or_insert_with(|| Value::Object(JsonMap::new()));
                if !entry.is_object() && !entry.is_array() {
                    return Err(fail());
                }
                entry
            }
            Seg::Index(i) => {
                let Value::Array(list) = cur else { return Err(fail()) };
                let Some(slot) = list.get_mut(*i) else { return Err(fail()) };
                if n == last {
                    *slot = result;
                    return Ok(out);
                }
                slot
            }
        };
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Payload templates and intrinsic functions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Template {
    Literal(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    Expr { field: String, expr: Expr },
}

impl Template {
    fn compile(value: &Value) -> Result<Template, String> {
        match value {
            Value::Object(map) => {
                let mut fields = Vec::new();
                for (key, v) in map {
                    if let Some(name) = key.strip_suffix(".$") {
                        let s =
                            v.as_str().ok_or_else(|| format!("{key:?}: a field ending in .$ takes a path or an intrinsic (a string)"))?;
                        if map.contains_key(name) {
                            return Err(format!("both {name:?} and {key:?} are given"));
                        }
                        let expr = Expr::parse(s).map_err(|e| format!("{key:?}: {e}"))?;
                        fields.push((name.to_string(), Template::Expr { field: key.clone(), expr }));
                    } else {
                        fields.push((key.clone(), Template::compile(v).map_err(|e| format!("{key}: {e}"))?));
                    }
                }
                Ok(Template::Object(fields))
            }
            Value::Array(list) => Ok(Template::Array(list.iter().map(Template::compile).collect::<Result<_, _>>()?)),
            other => Ok(Template::Literal(other.clone())),
        }
    }

    fn eval(&self, input: &Value, ctx: &Value) -> Result<Value, String> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Object(fields) => {
                let mut out = JsonMap::new();
                for (k, t) in fields {
                    out.insert(k.clone(), t.eval(input, ctx)?);
                }
                Ok(Value::Object(out))
            }
            Template::Array(list) => list.iter().map(|t| t.eval(input, ctx)).collect::<Result<Vec<_>, _>>().map(Value::Array),
            Template::Expr { field, expr } => expr.eval(input, ctx).map_err(|e| format!("{e} (field '{field}')")),
        }
    }
}

/// A path or an intrinsic function call.
#[derive(Debug, Clone)]
enum Expr {
    Path(Path),
    Call(Call),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Format,
    Array,
    ArrayRange,
    ArrayLength,
    ArrayGetItem,
    ArrayContains,
    ArrayPartition,
    ArrayUnique,
    JsonToString,
    StringToJson,
    MathAdd,
    StringSplit,
}

#[derive(Debug, Clone)]
struct Call {
    func: Func,
    name: String,
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// A string literal: its text, and the same split at its unescaped `{}` placeholders.
    Str {
        text: String,
        parts: Vec<String>,
    },
    Value(Value),
    Path(Path),
    Call(Box<Call>),
}

impl Expr {
    fn parse(text: &str) -> Result<Expr, String> {
        let trimmed = text.trim();
        if trimmed.starts_with("States.") {
            let chars: Vec<char> = trimmed.chars().collect();
            let mut pos = 0;
            let call = parse_call(&chars, &mut pos).map_err(|e| format!("invalid intrinsic {text:?}: {e}"))?;
            skip_ws(&chars, &mut pos);
            if pos != chars.len() {
                return Err(format!("invalid intrinsic {text:?}: unexpected text after the call"));
            }
            Ok(Expr::Call(call))
        } else {
            Path::parse(text).map(Expr::Path)
        }
    }

    fn eval(&self, input: &Value, ctx: &Value) -> Result<Value, String> {
        match self {
            Expr::Path(p) => p.resolve(input, ctx),
            Expr::Call(c) => c.eval(input, ctx),
        }
    }
}

fn skip_ws(chars: &[char], pos: &mut usize) {
    while *pos < chars.len() && chars[*pos].is_whitespace() {
        *pos += 1;
    }
}

fn parse_call(chars: &[char], pos: &mut usize) -> Result<Call, String> {
    let start = *pos;
    while *pos < chars.len() && chars[*pos] != '(' {
        *pos += 1;
    }
    let name: String = chars[start..*pos].iter().collect::<String>().trim().to_string();
    if *pos >= chars.len() {
        return Err(format!("missing ( after {name}"));
    }
    *pos += 1;
    let func = match name.as_str() {
        "States.Format" => Func::Format,
        "States.Array" => Func::Array,
        "States.ArrayRange" => Func::ArrayRange,
        "States.ArrayLength" => Func::ArrayLength,
        "States.ArrayGetItem" => Func::ArrayGetItem,
        "States.ArrayContains" => Func::ArrayContains,
        "States.ArrayPartition" => Func::ArrayPartition,
        "States.ArrayUnique" => Func::ArrayUnique,
        "States.JsonToString" => Func::JsonToString,
        "States.StringToJson" => Func::StringToJson,
        "States.MathAdd" => Func::MathAdd,
        "States.StringSplit" => Func::StringSplit,
        other => return Err(format!("the intrinsic function {other} is not supported by the local player")),
    };
    let mut args = Vec::new();
    skip_ws(chars, pos);
    if *pos < chars.len() && chars[*pos] == ')' {
        *pos += 1;
    } else {
        loop {
            skip_ws(chars, pos);
            args.push(parse_arg(chars, pos)?);
            skip_ws(chars, pos);
            match chars.get(*pos) {
                Some(',') => *pos += 1,
                Some(')') => {
                    *pos += 1;
                    break;
                }
                _ => return Err(format!("expected , or ) in the arguments of {name}")),
            }
        }
    }
    let arity_ok = match func {
        Func::Format => !args.is_empty(),
        Func::Array => true,
        Func::ArrayRange => args.len() == 3,
        Func::ArrayLength | Func::ArrayUnique | Func::JsonToString | Func::StringToJson => args.len() == 1,
        Func::ArrayGetItem | Func::ArrayContains | Func::ArrayPartition | Func::MathAdd | Func::StringSplit => args.len() == 2,
    };
    if !arity_ok {
        return Err(format!("wrong number of arguments for {name}"));
    }
    if func == Func::Format {
        match &args[0] {
            Arg::Str { parts, .. } if parts.len() == args.len() => {}
            Arg::Str { parts, .. } => {
                return Err(format!(
                    "States.Format has {} placeholder(s) but {} value argument(s)",
                    parts.len().saturating_sub(1),
                    args.len() - 1
                ))
            }
            _ => return Err("the first argument of States.Format must be a string literal".into()),
        }
    }
    Ok(Call { func, name, args })
}

fn parse_arg(chars: &[char], pos: &mut usize) -> Result<Arg, String> {
    match chars.get(*pos) {
        None => Err("missing argument".into()),
        Some('\'') => {
            *pos += 1;
            let mut text = String::new();
            let mut parts = vec![String::new()];
            loop {
                let Some(&c) = chars.get(*pos) else { return Err("unterminated string literal".into()) };
                *pos += 1;
                match c {
                    '\'' => break,
                    '\\' => {
                        let Some(&escaped) = chars.get(*pos) else { return Err("unterminated string literal".into()) };
                        *pos += 1;
                        text.push(escaped);
                        if let Some(last) = parts.last_mut() {
                            last.push(escaped);
                        }
                    }
                    '{' if chars.get(*pos) == Some(&'}') => {
                        *pos += 1;
                        text.push_str("{}");
                        parts.push(String::new());
                    }
                    _ => {
                        text.push(c);
                        if let Some(last) = parts.last_mut() {
                            last.push(c);
                        }
                    }
                }
            }
            Ok(Arg::Str { text, parts })
        }
        Some('$') => {
            let start = *pos;
            let mut depth = 0usize;
            let mut quote: Option<char> = None;
            while let Some(&c) = chars.get(*pos) {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '\'') | (None, '"') if depth > 0 => quote = Some(c),
                    (None, '[') => depth += 1,
                    (None, ']') => depth = depth.saturating_sub(1),
                    (None, ',') | (None, ')') if depth == 0 => break,
                    _ => {}
                }
                *pos += 1;
            }
            let text: String = chars[start..*pos].iter().collect();
            Path::parse(text.trim()).map(Arg::Path)
        }
        Some(_) => {
            let rest: String = chars[*pos..].iter().collect();
            if rest.starts_with("States.") {
                return parse_call(chars, pos).map(|c| Arg::Call(Box::new(c)));
            }
            let start = *pos;
            while let Some(&c) = chars.get(*pos) {
                if c == ',' || c == ')' || c.is_whitespace() {
                    break;
                }
                *pos += 1;
            }
            let token: String = chars[start..*pos].iter().collect();
            match token.as_str() {
                "true" => Ok(Arg::Value(Value::Bool(true))),
                "false" => Ok(Arg::Value(Value::Bool(false))),
                "null" => Ok(Arg::Value(Value::Null)),
                _ => match serde_json::from_str::<Value>(&token) {
                    Ok(v @ Value::Number(_)) => Ok(Arg::Value(v)),
                    _ => Err(format!("invalid argument {token:?} (expected 'string', number, true, false, null, a path or an intrinsic)")),
                },
            }
        }
    }
}

fn as_int(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(f as i64)
    } else {
        None
    }
}

impl Call {
    fn eval(&self, input: &Value, ctx: &Value) -> Result<Value, String> {
        let name = &self.name;
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::Str { text, .. } => Value::String(text.clone()),
                Arg::Value(v) => v.clone(),
                Arg::Path(p) => p.resolve(input, ctx)?,
                Arg::Call(c) => c.eval(input, ctx)?,
            });
        }
        let int_arg = |i: usize| as_int(&values[i]).ok_or_else(|| format!("{name}: argument {} must be an integer", i + 1));
        let array_arg = |i: usize| values[i].as_array().cloned().ok_or_else(|| format!("{name}: argument {} must be an array", i + 1));
        match self.func {
            Func::Format => {
                let Some(Arg::Str { parts, .. }) = self.args.first() else {
                    return Err(format!("{name}: the first argument must be a string literal"));
                };
                let mut out = String::new();
                for (i, part) in parts.iter().enumerate() {
                    out.push_str(part);
                    if let Some(v) = values.get(i + 1) {
                        if i + 1 < parts.len() {
                            match v {
                                Value::String(s) => out.push_str(s),
                                Value::Object(_) | Value::Array(_) => {
                                    return Err(format!("{name}: argument {} must be a string, number, boolean or null", i + 2))
                                }
                                other => out.push_str(&other.to_string()),
                            }
                        }
                    }
                }
                Ok(Value::String(out))
            }
            Func::Array => Ok(Value::Array(values)),
            Func::ArrayRange => {
                let (start, end, step) = (int_arg(0)?, int_arg(1)?, int_arg(2)?);
                if step == 0 {
                    return Err(format!("{name}: the step must not be 0"));
                }
                let mut out = Vec::new();
                let mut cur = start;
                while (step > 0 && cur <= end) || (step < 0 && cur >= end) {
                    if out.len() >= 1000 {
                        return Err(format!("{name}: more than 1000 items"));
                    }
                    out.push(Value::from(cur));
                    cur = match cur.checked_add(step) {
                        Some(c) => c,
                        None => break,
                    };
                }
                Ok(Value::Array(out))
            }
            Func::ArrayLength => Ok(Value::from(array_arg(0)?.len())),
            Func::ArrayGetItem => {
                let list = array_arg(0)?;
                let i = int_arg(1)?;
                usize::try_from(i).ok().and_then(|i| list.get(i).cloned()).ok_or_else(|| format!("{name}: index {i} out of bounds"))
            }
            Func::ArrayContains => Ok(Value::Bool(array_arg(0)?.contains(&values[1]))),
            Func::ArrayPartition => {
                let list = array_arg(0)?;
                let size = int_arg(1)?;
                let size = usize::try_from(size).ok().filter(|s| *s > 0).ok_or_else(|| format!("{name}: the chunk size must be > 0"))?;
                Ok(Value::Array(list.chunks(size).map(|c| Value::Array(c.to_vec())).collect()))
            }
            Func::ArrayUnique => {
                let mut out: Vec<Value> = Vec::new();
                for v in array_arg(0)? {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                Ok(Value::Array(out))
            }
            Func::JsonToString => serde_json::to_string(&values[0]).map(Value::String).map_err(|e| format!("{name}: {e}")),
            Func::StringToJson => {
                let s = values[0].as_str().ok_or_else(|| format!("{name}: the argument must be a string"))?;
                serde_json::from_str(s).map_err(|e| format!("{name}: not valid JSON: {e}"))
            }
            Func::MathAdd => {
                let sum = int_arg(0)?.checked_add(int_arg(1)?).ok_or_else(|| format!("{name}: overflow"))?;
                Ok(Value::from(sum))
            }
            Func::StringSplit => {
                let (Some(s), Some(delims)) = (values[0].as_str(), values[1].as_str()) else {
                    return Err(format!("{name}: both arguments must be strings"));
                };
                let parts = s.split(|c: char| delims.contains(c)).filter(|p| !p.is_empty()).map(|p| Value::String(p.to_string()));
                Ok(Value::Array(parts.collect()))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

const MAX_TRANSITIONS: usize = 25_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum FailKind {
    /// Raised by a Task's function (matched by `States.TaskFailed`).
    Task,
    /// `States.Runtime`: never retried nor caught.
    Runtime,
    /// Any other error (Fail states, `States.NoChoiceMatched`, ...).
    Other,
}

#[derive(Debug, Clone)]
struct Failure {
    error: String,
    cause: String,
    state: String,
    kind: FailKind,
}

impl Failure {
    fn runtime(state: &str, cause: impl Into<String>) -> Failure {
        Failure {
            error: "States.Runtime".into(),
            cause: format!("An error occurred while executing the state '{state}': {}", cause.into()),
            state: state.to_string(),
            kind: FailKind::Runtime,
        }
    }
}

fn matches_error(errors: &[String], failure: &Failure) -> bool {
    if failure.kind == FailKind::Runtime {
        return false;
    }
    errors.iter().any(|e| e == "States.ALL" || *e == failure.error || (e == "States.TaskFailed" && failure.kind == FailKind::Task))
}

enum Step {
    Next(String, Value),
    End(Value),
}

struct Runner<'a> {
    invoker: &'a dyn TaskInvoker,
    scale: f64,
    cap: Option<usize>,
    execution: Value,
    state_machine: Value,
    trace: Mutex<Vec<TraceEntry>>,
}

type Item = Option<(usize, Value)>;

impl<'a> Runner<'a> {
    fn record(&self, state: &str, item: &Item, event: TraceEvent) {
        let entry = TraceEntry { state: state.to_string(), map_index: item.as_ref().map(|(i, _)| *i), event };
        match self.trace.lock() {
            Ok(mut trace) => trace.push(entry),
            Err(poisoned) => poisoned.into_inner().push(entry),
        }
    }

    fn context(&self, state: &str, entered: &str, retry_count: u32, item: &Item) -> Value {
        let mut ctx = json!({
            "Execution": self.execution,
            "StateMachine": self.state_machine,
            "State": { "Name": state, "EnteredTime": entered, "RetryCount": retry_count },
        });
        if let (Some((index, value)), Value::Object(map)) = (item, &mut ctx) {
            map.insert("Map".into(), json!({ "Item": { "Index": index, "Value": value } }));
        }
        ctx
    }

    async fn sleep(&self, seconds: f64) {
        let scaled = seconds * self.scale;
        if scaled > 0.0 {
            if let Ok(d) = Duration::try_from_secs_f64(scaled) {
                tokio::time::sleep(d).await;
            }
        }
    }

    fn run_scope<'s>(&'s self, scope: &'s Scope, input: Value, item: Item) -> BoxFuture<'s, Result<Value, Failure>> {
        Box::pin(async move {
            let mut name = scope.start_at.clone();
            let mut value = input;
            let mut transitions = 0usize;
            loop {
                transitions += 1;
                let Some(state) = scope.states.get(&name) else {
                    return Err(Failure::runtime(&name, "no such state"));
                };
                if transitions > MAX_TRANSITIONS {
                    return Err(Failure::runtime(&name, format!("more than {MAX_TRANSITIONS} state transitions")));
                }
                self.record(&name, &item, TraceEvent::Entered);
                match self.run_state(state, value, &item).await {
                    Ok(step) => {
                        self.record(&name, &item, TraceEvent::Exited);
                        match step {
                            Step::Next(next, v) => {
                                name = next;
                                value = v;
                            }
                            Step::End(v) => return Ok(v),
                        }
                    }
                    Err(mut failure) => {
                        self.record(&name, &item, TraceEvent::Failed { error: failure.error.clone() });
                        failure.state = name;
                        return Err(failure);
                    }
                }
            }
        })
    }

    fn transition(state: &State, output: Value) -> Step {
        match &state.next {
            Some(next) => Step::Next(next.clone(), output),
            None => Step::End(output),
        }
    }

    fn select(state: &State, sel: &Sel, value: &Value, ctx: &Value, what: &str) -> Result<Value, Failure> {
        match sel {
            Sel::All => Ok(value.clone()),
            Sel::Discard => Ok(Value::Object(JsonMap::new())),
            Sel::Path(p) => p.resolve(value, ctx).map_err(|e| Failure::runtime(&state.name, format!("{e} ({what})"))),
        }
    }

    async fn run_state(&self, state: &State, raw: Value, item: &Item) -> Result<Step, Failure> {
        let entered = now_iso();
        let ctx = self.context(&state.name, &entered, 0, item);
        let runtime = |e: String| Failure::runtime(&state.name, e);
        match &state.kind {
            Kind::Pass(pass) => {
                let effective = Self::select(state, &state.input_path, &raw, &ctx, "InputPath")?;
                let effective = match &pass.parameters {
                    Some(t) => t.eval(&effective, &ctx).map_err(runtime)?,
                    None => effective,
                };
                let result = pass.result.clone().unwrap_or(effective);
                let combined = apply_result_path(&raw, &pass.result_path, result).map_err(runtime)?;
                let output = Self::select(state, &state.output_path, &combined, &ctx, "OutputPath")?;
                Ok(Self::transition(state, output))
            }
            Kind::Succeed => {
                let effective = Self::select(state, &state.input_path, &raw, &ctx, "InputPath")?;
                Ok(Step::End(Self::select(state, &state.output_path, &effective, &ctx, "OutputPath")?))
            }
            Kind::Fail(fail) => {
                let text = |source: &Option<StrSource>| -> Result<String, Failure> {
                    match source {
                        None => Ok(String::new()),
                        Some(StrSource::Literal(s)) => Ok(s.clone()),
                        Some(StrSource::Expr(e)) => match e.eval(&raw, &ctx).map_err(runtime)? {
                            Value::String(s) => Ok(s),
                            other => Err(runtime(format!("ErrorPath/CausePath must select a string, got {other}"))),
                        },
                    }
                };
                let error = text(&fail.error)?;
                let cause = text(&fail.cause)?;
                Err(Failure { error, cause, state: state.name.clone(), kind: FailKind::Other })
            }
            Kind::Wait(seconds) => {
                let effective = Self::select(state, &state.input_path, &raw, &ctx, "InputPath")?;
                let secs = match seconds {
                    WaitSeconds::Fixed(n) => *n as f64,
                    WaitSeconds::Path(e) => {
                        let v = e.eval(&effective, &ctx).map_err(runtime)?;
                        match as_int(&v) {
                            Some(n) if n >= 0 => n as f64,
                            _ => return Err(runtime(format!("SecondsPath must select a non-negative integer, got {v}"))),
                        }
                    }
                };
                self.sleep(secs).await;
                let output = Self::select(state, &state.output_path, &effective, &ctx, "OutputPath")?;
                Ok(Self::transition(state, output))
            }
            Kind::Choice(choice) => {
                let effective = Self::select(state, &state.input_path, &raw, &ctx, "InputPath")?;
                let mut target = None;
                for (rule, next) in &choice.choices {
                    if eval_rule(rule, &effective, &ctx).map_err(runtime)? {
                        target = Some(next.clone());
                        break;
                    }
                }
                let Some(next) = target.or_else(|| choice.default.clone()) else {
                    return Err(Failure {
                        error: "States.NoChoiceMatched".into(),
                        cause: format!("No Matches! (state '{}')", state.name),
                        state: state.name.clone(),
                        kind: FailKind::Other,
                    });
                };
                let output = Self::select(state, &state.output_path, &effective, &ctx, "OutputPath")?;
                Ok(Step::Next(next, output))
            }
            Kind::Task(_) | Kind::Map(_) => self.run_with_retries(state, raw, item, &entered).await,
        }
    }

    async fn run_with_retries(&self, state: &State, raw: Value, item: &Item, entered: &str) -> Result<Step, Failure> {
        let mut used = vec![0u32; state.retry.len()];
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let ctx = self.context(&state.name, entered, attempt - 1, item);
            let result = match &state.kind {
                Kind::Task(task) => self.task_attempt(state, task, &raw, &ctx, item, attempt).await,
                Kind::Map(map) => self.map_attempt(state, map, &raw, &ctx).await,
                _ => Err(Failure::runtime(&state.name, "not a Task or Map state")),
            };
            let failure = match result {
                Ok(output) => return Ok(Self::transition(state, output)),
                Err(f) if f.kind == FailKind::Runtime => return Err(f),
                Err(f) => f,
            };
            if let Some(i) = state.retry.iter().position(|r| matches_error(&r.errors, &failure)) {
                let retrier = &state.retry[i];
                if used[i] < retrier.max_attempts {
                    let mut delay = retrier.interval * retrier.backoff.powi(i32::try_from(used[i]).unwrap_or(i32::MAX));
                    if let Some(max) = retrier.max_delay {
                        delay = delay.min(max);
                    }
                    if !delay.is_finite() {
                        delay = retrier.max_delay.unwrap_or(f64::MAX);
                    }
                    used[i] += 1;
                    self.record(&state.name, item, TraceEvent::Retrying { attempt, delay_s: delay });
                    self.sleep(delay).await;
                    continue;
                }
            }
            if let Some(catcher) = state.catch.iter().find(|c| matches_error(&c.errors, &failure)) {
                self.record(&state.name, item, TraceEvent::Caught { error: failure.error.clone() });
                let error_output = json!({ "Error": failure.error, "Cause": failure.cause });
                let output = apply_result_path(&raw, &catcher.result_path, error_output).map_err(|e| Failure::runtime(&state.name, e))?;
                return Ok(Step::Next(catcher.next.clone(), output));
            }
            return Err(failure);
        }
    }

    async fn task_attempt(
        &self,
        state: &State,
        task: &TaskState,
        raw: &Value,
        ctx: &Value,
        item: &Item,
        attempt: u32,
    ) -> Result<Value, Failure> {
        let runtime = |e: String| Failure::runtime(&state.name, e);
        let effective = Self::select(state, &state.input_path, raw, ctx, "InputPath")?;
        let params = match &task.parameters {
            Some(t) => t.eval(&effective, ctx).map_err(runtime)?,
            None => effective,
        };
        let (function, payload) = match &task.target {
            Target::LambdaInvoke { .. } => {
                let function = params.get("FunctionName").and_then(Value::as_str).map(str::to_string);
                let Some(function) = function else {
                    return Err(runtime("Parameters.FunctionName must be a string".into()));
                };
                (function, params.get("Payload").cloned().unwrap_or_else(|| Value::Object(JsonMap::new())))
            }
            Target::Function(arn) => (arn.clone(), params),
        };
        let result = match self.invoker.invoke(&function, payload).await {
            Ok(result) => {
                self.record(&state.name, item, TraceEvent::TaskSucceeded { attempt });
                result
            }
            Err(f) => {
                self.record(&state.name, item, TraceEvent::TaskFailed { attempt, error: f.error.clone() });
                return Err(Failure { error: f.error, cause: f.cause, state: state.name.clone(), kind: FailKind::Task });
            }
        };
        let result = match &task.target {
            Target::LambdaInvoke { .. } => json!({ "ExecutedVersion": "$LATEST", "Payload": result, "StatusCode": 200 }),
            Target::Function(_) => result,
        };
        let result = match &task.result_selector {
            Some(t) => t.eval(&result, ctx).map_err(runtime)?,
            None => result,
        };
        let combined = apply_result_path(raw, &task.result_path, result).map_err(runtime)?;
        Self::select(state, &state.output_path, &combined, ctx, "OutputPath")
    }

    async fn map_attempt(&self, state: &State, map: &MapState, raw: &Value, ctx: &Value) -> Result<Value, Failure> {
        let runtime = |e: String| Failure::runtime(&state.name, e);
        let effective = Self::select(state, &state.input_path, raw, ctx, "InputPath")?;
        let items = match &map.items {
            Some(e) => e.eval(&effective, ctx).map_err(|e| runtime(format!("{e} (ItemsPath)")))?,
            None => effective.clone(),
        };
        let Value::Array(items) = items else {
            return Err(runtime(format!("ItemsPath must select an array, got {}", type_name(&items))));
        };
        let limit = match &map.max_concurrency {
            Concurrency::Fixed(n) => *n,
            Concurrency::Path(p) => {
                let v = p.resolve(&effective, ctx).map_err(|e| runtime(format!("{e} (MaxConcurrencyPath)")))?;
                match as_int(&v) {
                    Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                    _ => return Err(runtime(format!("MaxConcurrencyPath must select a non-negative integer, got {v}"))),
                }
            }
        };
        let count = items.len();
        let mut limit = if limit == 0 { count } else { limit };
        if let Some(cap) = self.cap {
            limit = limit.min(cap);
        }
        let limit = limit.max(1);
        let effective = &effective;
        let iterations = items.into_iter().enumerate().map(|(index, value)| {
            let item: Item = Some((index, value));
            async move {
                let input = match &map.item_selector {
                    Some(selector) => {
                        let mut item_ctx = ctx.clone();
                        if let (Some((i, v)), Value::Object(m)) = (&item, &mut item_ctx) {
                            m.insert("Map".into(), json!({ "Item": { "Index": i, "Value": v } }));
                        }
                        match selector.eval(effective, &item_ctx) {
                            Ok(v) => v,
                            Err(e) => return (index, Err(Failure::runtime(&state.name, format!("{e} (ItemSelector)")))),
                        }
                    }
                    None => item.as_ref().map(|(_, v)| v.clone()).unwrap_or(Value::Null),
                };
                (index, self.run_scope(&map.processor, input, item).await)
            }
        });
        let mut outputs: Vec<Value> = vec![Value::Null; count];
        let mut running = stream::iter(iterations).buffer_unordered(limit);
        while let Some((index, result)) = running.next().await {
            match result {
                Ok(v) => {
                    if let Some(slot) = outputs.get_mut(index) {
                        *slot = v;
                    }
                }
                Err(mut failure) => {
                    failure.state = state.name.clone();
                    return Err(failure);
                }
            }
        }
        drop(running);
        let result = Value::Array(outputs);
        let result = match &map.result_selector {
            Some(t) => t.eval(&result, ctx).map_err(runtime)?,
            None => result,
        };
        let combined = apply_result_path(raw, &map.result_path, result).map_err(runtime)?;
        Self::select(state, &state.output_path, &combined, ctx, "OutputPath")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn eval_rule(rule: &Rule, input: &Value, ctx: &Value) -> Result<bool, String> {
    match rule {
        Rule::And(rules) => {
            for r in rules {
                if !eval_rule(r, input, ctx)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Rule::Or(rules) => {
            for r in rules {
                if eval_rule(r, input, ctx)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Rule::Not(r) => Ok(!eval_rule(r, input, ctx)?),
        Rule::Compare { variable, op, operand } => {
            let expected = match operand {
                Operand::Value(v) => v.clone(),
                Operand::Path(p) => p.resolve(input, ctx).map_err(|e| format!("{e} (choice rule operand)"))?,
            };
            let value = variable.get(input, ctx);
            if *op == Op::IsPresent {
                return Ok(value.is_some() == expected.as_bool().unwrap_or(false));
            }
            let Some(value) = value else {
                return Err(format!("Invalid path '{}': the choice state's condition path references an undefined value", variable.text));
            };
            let flag = expected.as_bool().unwrap_or(false);
            Ok(match op {
                Op::IsNull => value.is_null() == flag,
                Op::IsString => value.is_string() == flag,
                Op::IsNumeric => value.is_number() == flag,
                Op::IsBoolean => value.is_boolean() == flag,
                Op::BoolEq => matches!((value.as_bool(), expected.as_bool()), (Some(a), Some(b)) if a == b),
                Op::StrMatches => match (value.as_str(), expected.as_str()) {
                    (Some(a), Some(pattern)) => glob_match(pattern, a),
                    _ => false,
                },
                Op::StrEq | Op::StrLt | Op::StrGt | Op::StrLe | Op::StrGe => match (value.as_str(), expected.as_str()) {
                    (Some(a), Some(b)) => match op {
                        Op::StrEq => a == b,
                        Op::StrLt => a < b,
                        Op::StrGt => a > b,
                        Op::StrLe => a <= b,
                        _ => a >= b,
                    },
                    _ => false,
                },
                Op::NumEq | Op::NumLt | Op::NumGt | Op::NumLe | Op::NumGe => match (value.as_f64(), expected.as_f64()) {
                    (Some(a), Some(b)) => match op {
                        Op::NumEq => a == b,
                        Op::NumLt => a < b,
                        Op::NumGt => a > b,
                        Op::NumLe => a <= b,
                        _ => a >= b,
                    },
                    _ => false,
                },
                Op::IsPresent => false,
            })
        }
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literal.
fn glob_match(pattern: &str, text: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => toks.push(Tok::Char(chars.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn next_execution_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("local-{}-{n}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    type Behavior = Box<dyn Fn(&str, &Value, usize) -> Result<Value, TaskFailure> + Send + Sync>;

    /// A fake Lambda service: `behavior(function, payload, n)` where `n` counts the calls with
    /// that function and payload (from 1).
    struct Fake {
        behavior: Behavior,
        delay_ms: u64,
        calls: Mutex<Vec<(String, Value)>>,
        counts: Mutex<HashMap<String, usize>>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    impl Fake {
        fn new(behavior: impl Fn(&str, &Value, usize) -> Result<Value, TaskFailure> + Send + Sync + 'static) -> Fake {
            Fake {
                behavior: Box::new(behavior),
                delay_ms: 0,
                calls: Mutex::new(Vec::new()),
                counts: Mutex::new(HashMap::new()),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
            }
        }

        fn calls_to(&self, function: &str) -> Vec<Value> {
            self.calls.lock().unwrap().iter().filter(|(f, _)| f == function).map(|(_, p)| p.clone()).collect()
        }
    }

    impl TaskInvoker for Fake {
        fn invoke<'a>(&'a self, function: &'a str, payload: Value) -> BoxFuture<'a, Result<Value, TaskFailure>> {
            Box::pin(async move {
                let n = {
                    let mut counts = self.counts.lock().unwrap();
                    let c = counts.entry(format!("{function} {payload}")).or_insert(0);
                    *c += 1;
                    *c
                };
                self.calls.lock().unwrap().push((function.to_string(), payload.clone()));
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                if self.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
                }
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                (self.behavior)(function, &payload, n)
            })
        }
    }

    fn fail(error: &str, cause: &str) -> TaskFailure {
        TaskFailure { error: error.into(), cause: cause.into() }
    }

    fn fast() -> Options {
        Options { retry_interval_scale: 0.0, max_concurrency_cap: None }
    }

    fn machine(definition: Value) -> StateMachine {
        StateMachine::parse(&definition.to_string()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(definition: Value) -> DefinitionError {
        match StateMachine::parse(&definition.to_string()) {
            Ok(_) => panic!("expected a definition error for {definition}"),
            Err(e) => e,
        }
    }

    async fn run(definition: Value, input: Value, fake: &Fake) -> Execution {
        execute(&machine(definition), input, fake, &fast()).await
    }

    fn pass_end() -> Value {
        json!({ "Type": "Pass", "End": true })
    }

    #[test]
    fn parse_errors_name_the_state_and_field() {
        let cases: Vec<(Value, &[&str])> = vec![
            (json!({ "States": { "A": pass_end() } }), &["StartAt", "missing"]),
            (json!({ "StartAt": "B", "States": { "A": pass_end() } }), &["StartAt", "\"B\""]),
            (json!({ "StartAt": "A", "States": { "A": { "Type": "Pass", "Next": "Nope" } } }), &["\"A\"", "Next", "\"Nope\""]),
            (json!({ "StartAt": "A", "States": { "A": { "Type": "Pass" } } }), &["\"A\"", "Next or \"End\""]),
            (json!({ "StartAt": "A", "States": { "A": { "Type": "Pass", "Next": "A", "End": true } } }), &["both Next and End"]),
            (json!({ "StartAt": "A", "States": { "A": { "Type": "Parallel", "Branches": [], "End": true } } }), &["\"A\"", "Parallel"]),
            (json!({ "StartAt": "A", "States": { "A": { "Type": "Pass", "End": true, "Bogus": 1 } } }), &["\"A\"", "\"Bogus\""]),
            (
                json!({ "StartAt": "A", "States": { "A": { "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": true } } }),
                &["\"A\"", "Resource", "sqs"],
            ),
            (
                json!({ "StartAt": "A", "States": { "A": { "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
                    "Catch": [{ "ErrorEquals": ["States.ALL"], "Next": "Gone" }], "End": true } } }),
                &["\"A\"", "Catch[0].Next", "\"Gone\""],
            ),
            (
                json!({ "StartAt": "A", "States": { "A": { "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
                    "Retry": [{ "ErrorEquals": ["States.ALL"] }, { "ErrorEquals": ["X"] }], "End": true } } }),
                &["Retry[0].ErrorEquals", "last retrier"],
            ),
            (
                json!({ "StartAt": "A", "States": { "A": { "Type": "Choice", "Choices": [
                    { "Variable": "$.x", "NumericEquals": 1, "Next": "B" }], "Default": "Nowhere" }, "B": pass_end() } }),
                &["\"A\"", "Default", "\"Nowhere\""],
            ),
            (
                json!({ "StartAt": "M", "States": { "M": { "Type": "Map", "End": true, "ToleratedFailureCount": 1,
                    "ItemProcessor": { "StartAt": "P", "States": { "P": pass_end() } } } } }),
                &["\"M\"", "ToleratedFailureCount", "not supported"],
            ),
            (
                json!({ "StartAt": "M", "States": { "M": { "Type": "Map", "End": true,
                    "ItemProcessor": { "ProcessorConfig": { "Mode": "DISTRIBUTED" }, "StartAt": "P", "States": { "P": pass_end() } } } } }),
                &["\"M\"", "ProcessorConfig.Mode", "distributed"],
            ),
            (
                json!({ "StartAt": "M", "States": { "M": { "Type": "Map", "End": true,
                    "ItemProcessor": { "StartAt": "P", "States": { "P": { "Type": "Pass", "Next": "Out" } } } }, "Out": pass_end() } }),
                &["\"M\" > \"P\"", "Next", "\"Out\""],
            ),
            (
                json!({ "StartAt": "A", "States": { "A": { "Type": "Pass", "End": true, "Parameters": { "x.$": "States.Nope(1)" } } } }),
                &["\"A\"", "Parameters", "States.Nope"],
            ),
            (
                json!({ "StartAt": "A", "States": { "A": { "Type": "Pass", "End": true, "Parameters": { "x.$": "States.Format('{} {}', $.a)" } } } }),
                &["\"A\"", "Parameters", "placeholder"],
            ),
            (json!({ "StartAt": "A", "States": { "A": { "Type": "Pass", "End": true, "InputPath": "$..a" } } }), &["\"A\"", "InputPath"]),
            (json!({ "StartAt": "A", "States": { "A": { "Type": "Pass", "End": true, "OutputPath": "$.a[*]" } } }), &["OutputPath"]),
            (
                json!({ "StartAt": "A", "States": { "A": { "Type": "Choice", "Choices": [
                    { "Variable": "$.t", "TimestampEquals": "2020-01-01T00:00:00Z", "Next": "A" }] } } }),
                &["Choices[0].TimestampEquals", "timestamp"],
            ),
            (
                json!({ "StartAt": "A", "States": { "A": { "Type": "Wait", "Timestamp": "2020-01-01T00:00:00Z", "End": true } } }),
                &["Timestamp"],
            ),
            (json!({ "StartAt": "A", "QueryLanguage": "JSONata", "States": { "A": pass_end() } }), &["QueryLanguage"]),
        ];
        for (definition, needles) in cases {
            let message = parse_err(definition.clone()).to_string();
            for needle in needles {
                assert!(message.contains(needle), "{message:?} should contain {needle:?} (definition {definition})");
            }
        }
        let e = StateMachine::parse("{ not json").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        assert!(StateMachine::parse("[]").is_err());
        assert!(StateMachine::parse("null").is_err());
    }

    #[tokio::test]
    async fn result_path_examples_from_the_aws_docs() {
        let input = json!({ "comment": "This is a test of the input and output of a Task state.", "details": "Default example", "who": "AWS Step Functions" });
        let fake = Fake::new(|_, payload, _| Ok(json!(format!("Hello, {}!", payload["who"].as_str().unwrap_or("?")))));
        let task = |result_path: Value| {
            let mut state =
                json!({ "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:HelloFunction", "End": true });
            if result_path != json!("absent") {
                state["ResultPath"] = result_path;
            }
            json!({ "StartAt": "Hello", "States": { "Hello": state } })
        };
        let out = run(task(json!("absent")), input.clone(), &fake).await.output.unwrap();
        assert_eq!(out, json!("Hello, AWS Step Functions!"));
        let out = run(task(json!("$")), input.clone(), &fake).await.output.unwrap();
        assert_eq!(out, json!("Hello, AWS Step Functions!"));
        let out = run(task(Value::Null), input.clone(), &fake).await.output.unwrap();
        assert_eq!(out, input);
        let out = run(task(json!("$.taskresult")), input.clone(), &fake).await.output.unwrap();
        let mut expected = input.clone();
        expected["taskresult"] = json!("Hello, AWS Step Functions!");
        assert_eq!(out, expected);
        let out = run(task(json!("$.strings.lambdaresult")), input.clone(), &fake).await.output.unwrap();
        let mut expected = input.clone();
        expected["strings"] = json!({ "lambdaresult": "Hello, AWS Step Functions!" });
        assert_eq!(out, expected);
        // ResultPath into a scalar input cannot be applied.
        let run_ = run(task(json!("$.x")), json!("scalar"), &fake).await;
        assert_eq!(run_.output.unwrap_err().error, "States.Runtime");
    }

    #[tokio::test]
    async fn input_output_processing_with_paths_context_and_intrinsics() {
        let definition = json!({
            "StartAt": "Shape",
            "States": {
                "Shape": {
                    "Type": "Pass",
                    "InputPath": "$.order",
                    "Parameters": {
                        "id.$": "$.id",
                        "first.$": "$.lines[0].sku",
                        "quoted.$": "$['odd key']",
                        "state.$": "$$.State.Name",
                        "original.$": "$$.Execution.Input.meta",
                        "name.$": "$$.Execution.Name",
                        "label.$": "States.Format('order {} has {} line(s), \\'q\\' \\{x\\}', $.id, States.ArrayLength($.lines))",
                        "pair.$": "States.Array($.id, 'two', 3, true, null)",
                        "range.$": "States.ArrayRange(1, 9, 2)",
                        "down.$": "States.ArrayRange(3, 1, -1)",
                        "json.$": "States.JsonToString($.lines[0])",
                        "back.$": "States.StringToJson('{\"a\": [1, 2]}')",
                        "sum.$": "States.MathAdd($.id, -2)",
                        "split.$": "States.StringSplit('a,b,,c', ',')",
                        "chunks.$": "States.ArrayPartition(States.Array(1, 2, 3), 2)",
                        "nested": { "sku.$": "$.lines[1].sku", "fixed": [1, { "k": "v" }] }
                    },
                    "ResultPath": "$.shaped",
                    "OutputPath": "$.shaped",
                    "Next": "Select"
                },
                "Select": {
                    "Type": "Task",
                    "Resource": "arn:aws:lambda:us-east-1:123456789012:function:echo",
                    "Parameters": { "id.$": "$.id" },
                    "ResultSelector": { "echoed.$": "$.id", "constant": 7 },
                    "ResultPath": "$.task",
                    "Next": "Discard"
                },
                "Discard": { "Type": "Pass", "InputPath": null, "ResultPath": "$.kept", "End": true }
            }
        });
        let fake = Fake::new(|_, payload, _| Ok(payload.clone()));
        let input = json!({ "meta": { "m": 1 }, "order": { "id": 42, "odd key": "yes", "lines": [{ "sku": "A" }, { "sku": "B" }] } });
        let machine = machine(definition);
        let execution = execute(&machine, input, &fake, &fast()).await;
        let out = execution.output.clone().unwrap();
        assert_eq!(out["kept"], json!({}), "InputPath null gives {{}}; ResultPath applies to the raw input");
        assert_eq!(out["task"], json!({ "echoed": 42, "constant": 7 }));
        assert_eq!(out["id"], json!(42));
        assert_eq!(out["state"], json!("Shape"));
        assert_eq!(fake.calls_to("arn:aws:lambda:us-east-1:123456789012:function:echo"), vec![json!({ "id": 42 })]);

        // Look at the intermediate output through a machine that stops after Shape.
        let short = json!({ "StartAt": "Shape", "States": { "Shape": {
            "Type": "Pass", "InputPath": "$.order",
            "Parameters": {
                "id.$": "$.id", "first.$": "$.lines[0].sku", "quoted.$": "$['odd key']", "state.$": "$$.State.Name",
                "original.$": "$$.Execution.Input.meta",
                "label.$": "States.Format('order {} has {} line(s), \\'q\\' \\{x\\}', $.id, States.ArrayLength($.lines))",
                "pair.$": "States.Array($.id, 'two', 3, true, null)", "range.$": "States.ArrayRange(1, 9, 2)",
                "down.$": "States.ArrayRange(3, 1, -1)", "json.$": "States.JsonToString($.lines[0])",
                "back.$": "States.StringToJson('{\"a\": [1, 2]}')", "sum.$": "States.MathAdd($.id, -2)",
                "split.$": "States.StringSplit('a,b,,c', ',')", "chunks.$": "States.ArrayPartition(States.Array(1, 2, 3), 2)",
                "nested": { "sku.$": "$.lines[1].sku", "fixed": [1, { "k": "v" }] }
            },
            "End": true } } });
        let input = json!({ "meta": { "m": 1 }, "order": { "id": 42, "odd key": "yes", "lines": [{ "sku": "A" }, { "sku": "B" }] } });
        let out = run(short, input, &fake).await.output.unwrap();
        assert_eq!(
            out,
            json!({
                "id": 42, "first": "A", "quoted": "yes", "state": "Shape", "original": { "m": 1 },
                "label": "order 42 has 2 line(s), 'q' {x}",
                "pair": [42, "two", 3, true, null], "range": [1, 3, 5, 7, 9], "down": [3, 2, 1],
                "json": "{\"sku\":\"A\"}", "back": { "a": [1, 2] }, "sum": 40, "split": ["a", "b", "c"],
                "chunks": [[1, 2], [3]], "nested": { "sku": "B", "fixed": [1, { "k": "v" }] }
            })
        );
    }

    #[tokio::test]
    async fn unresolvable_path_fails_with_states_runtime_and_is_not_caught() {
        let definition = json!({ "StartAt": "T", "States": {
            "T": { "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
                   "Parameters": { "x.$": "$.missing.field" },
                   "Retry": [{ "ErrorEquals": ["States.ALL"] }],
                   "Catch": [{ "ErrorEquals": ["States.ALL"], "Next": "Handler" }], "End": true },
            "Handler": pass_end() } });
        let fake = Fake::new(|_, _, _| Ok(json!(1)));
        let execution = run(definition, json!({ "present": 1 }), &fake).await;
        let failure = execution.output.clone().unwrap_err();
        assert_eq!(failure.error, "States.Runtime");
        assert_eq!(failure.state, "T");
        assert!(failure.cause.contains("$.missing.field"), "{}", failure.cause);
        assert!(fake.calls.lock().unwrap().is_empty());
        assert!(!execution.entered("Handler"));
    }

    fn map_definition(max_concurrency: u64, retry: Value) -> Value {
        json!({
            "StartAt": "Items",
            "States": {
                "Items": { "Type": "Pass", "Parameters": { "items.$": "States.ArrayRange(0, 3, 1)", "run.$": "$.run" }, "Next": "Buckets" },
                "Buckets": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "MaxConcurrency": max_concurrency,
                    "ItemSelector": { "bucket.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "run.$": "$.run" },
                    "ItemProcessor": {
                        "ProcessorConfig": { "Mode": "INLINE" },
                        "StartAt": "Run",
                        "States": {
                            "Run": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::lambda:invoke",
                                "Parameters": { "FunctionName": "bucket-fn", "Payload.$": "$" },
                                "ResultSelector": { "done.$": "$.Payload.done" },
                                "Retry": retry,
                                "End": true
                            }
                        }
                    },
                    "ResultPath": "$.buckets",
                    "Next": "Commit"
                },
                "Commit": { "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:commit-fn", "End": true }
            }
        })
    }

    #[tokio::test]
    async fn map_over_array_range_keeps_item_order_and_bounds_concurrency() {
        let mut fake = Fake::new(|f, payload, _| {
            if f == "bucket-fn" {
                Ok(json!({ "done": payload["bucket"].as_i64().unwrap_or(-1) * 10 }))
            } else {
                Ok(json!({ "committed": payload["buckets"].as_array().map(Vec::len) }))
            }
        });
        fake.delay_ms = 20;
        let execution = run(map_definition(2, json!([])), json!({ "run": "r1" }), &fake).await;
        assert_eq!(execution.output.clone().unwrap(), json!({ "committed": 4 }));
        let commits = fake.calls_to("arn:aws:lambda:us-east-1:123456789012:function:commit-fn");
        assert_eq!(commits.len(), 1);
        assert_eq!(commits[0]["buckets"], json!([{ "done": 0 }, { "done": 10 }, { "done": 20 }, { "done": 30 }]));
        let payloads = fake.calls_to("bucket-fn");
        assert_eq!(payloads.len(), 4);
        for i in 0..4 {
            assert!(payloads.contains(&json!({ "bucket": i, "index": i, "run": "r1" })), "{payloads:?}");
        }
        assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 2, "MaxConcurrency 2 runs two at a time");
        let map_indexes: BTreeSet<usize> = execution.entries_of("Run").filter_map(|e| e.map_index).collect();
        assert_eq!(map_indexes, (0..4).collect());

        // Unlimited MaxConcurrency, capped by the options.
        let mut fake = Fake::new(|_, _, _| Ok(json!({ "done": 1 })));
        fake.delay_ms = 10;
        let options = Options { retry_interval_scale: 0.0, max_concurrency_cap: Some(1) };
        let execution = execute(&machine(map_definition(0, json!([]))), json!({ "run": "r" }), &fake, &options).await;
        assert!(execution.output.is_ok());
        assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);
        let mut fake = Fake::new(|_, _, _| Ok(json!({ "done": 1 })));
        fake.delay_ms = 10;
        let execution = run(map_definition(0, json!([])), json!({ "run": "r" }), &fake).await;
        assert!(execution.output.is_ok());
        assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 4, "0 = unlimited");
    }

    #[tokio::test]
    async fn map_item_failing_twice_then_succeeding_is_retried() {
        let fake = Fake::new(|f, payload, n| {
            if f == "bucket-fn" && payload["bucket"] == json!(2) && n <= 2 {
                Err(fail("Bucket.Flaky", "try again"))
            } else {
                Ok(json!({ "done": true }))
            }
        });
        let retry = json!([{ "ErrorEquals": ["Bucket.Flaky"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 2.0 }]);
        let execution = run(map_definition(2, retry), json!({ "run": "r" }), &fake).await;
        assert!(execution.output.is_ok(), "{:?}", execution.output);
        let events: Vec<TraceEvent> = execution.entries_of("Run").filter(|e| e.map_index == Some(2)).map(|e| e.event.clone()).collect();
        assert_eq!(
            events,
            vec![
                TraceEvent::Entered,
                TraceEvent::TaskFailed { attempt: 1, error: "Bucket.Flaky".into() },
                TraceEvent::Retrying { attempt: 1, delay_s: 3.0 },
                TraceEvent::TaskFailed { attempt: 2, error: "Bucket.Flaky".into() },
                TraceEvent::Retrying { attempt: 2, delay_s: 6.0 },
                TraceEvent::TaskSucceeded { attempt: 3 },
                TraceEvent::Exited,
            ]
        );
        assert_eq!(fake.calls_to("arn:aws:lambda:us-east-1:123456789012:function:commit-fn").len(), 1);
    }

    #[tokio::test]
    async fn map_item_always_failing_fails_the_execution_after_its_retries() {
        let fake = Fake::new(|f, payload, _| {
            if f == "bucket-fn" && payload["bucket"] == json!(2) {
                Err(fail("Bucket.Broken", "bucket 2 is broken"))
            } else {
                Ok(json!({ "done": true }))
            }
        });
        let retry = json!([
            { "ErrorEquals": ["Other.Error"], "MaxAttempts": 5 },
            { "ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 10, "MaxDelaySeconds": 50 }
        ]);
        let execution = run(map_definition(2, retry), json!({ "run": "r" }), &fake).await;
        let failure = execution.output.clone().unwrap_err();
        assert_eq!(
            failure,
            ExecutionFailure { error: "Bucket.Broken".into(), cause: "bucket 2 is broken".into(), state: "Buckets".into() }
        );
        let attempts = fake.calls_to("bucket-fn").iter().filter(|p| p["bucket"] == json!(2)).count();
        assert_eq!(attempts, 1 + 3);
        let delays: Vec<f64> = execution
            .entries_of("Run")
            .filter_map(|e| match e.event {
                TraceEvent::Retrying { delay_s, .. } => Some(delay_s),
                _ => None,
            })
            .collect();
        assert_eq!(delays, vec![1.0, 10.0, 50.0], "interval * backoff^(n-1), capped by MaxDelaySeconds");
        assert!(fake.calls_to("arn:aws:lambda:us-east-1:123456789012:function:commit-fn").is_empty());
        assert!(!execution.entered("Commit"));
        assert!(execution
            .trace
            .iter()
            .any(|e| e.state == "Buckets" && matches!(&e.event, TraceEvent::Failed { error } if error == "Bucket.Broken")));
    }

    #[tokio::test]
    async fn catch_routes_errors_to_handlers() {
        let definition = json!({ "StartAt": "Work", "States": {
            "Work": { "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:work",
                      "Retry": [{ "ErrorEquals": ["Custom.Error"], "MaxAttempts": 1 }],
                      "Catch": [
                          { "ErrorEquals": ["Other"], "Next": "Wrong" },
                          { "ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Handler" }
                      ],
                      "Next": "Wrong" },
            "Wrong": { "Type": "Fail", "Error": "Wrong", "Cause": "should not run" },
            "Handler": { "Type": "Pass", "End": true } } });
        let fake = Fake::new(|_, _, _| Err(fail("Custom.Error", "it broke")));
        let execution = run(definition, json!({ "job": 1 }), &fake).await;
        assert_eq!(execution.output.clone().unwrap(), json!({ "job": 1, "error": { "Error": "Custom.Error", "Cause": "it broke" } }));
        assert_eq!(fake.calls.lock().unwrap().len(), 2, "one retry before the catch");
        assert!(execution.trace.iter().any(|e| e.state == "Work" && e.event == TraceEvent::Caught { error: "Custom.Error".into() }));
        assert!(!execution.entered("Wrong"));

        // A Map catches a failed iteration (a Fail state) with States.ALL; Fail states end executions.
        let definition = json!({ "StartAt": "M", "States": {
            "M": { "Type": "Map", "ItemsPath": "$.xs",
                   "Iterator": { "StartAt": "Check", "States": {
                       "Check": { "Type": "Choice", "Choices": [{ "Variable": "$", "NumericGreaterThan": 1, "Next": "Bad" }], "Default": "Ok" },
                       "Bad": { "Type": "Fail", "Error": "Too.Big", "Cause": "over 1" },
                       "Ok": { "Type": "Succeed" } } },
                   "Catch": [{ "ErrorEquals": ["States.ALL"], "Next": "Stop" }], "End": true },
            "Stop": { "Type": "Fail", "ErrorPath": "$.Error", "CausePath": "States.Format('caught: {}', $.Cause)" } } });
        let execution = run(definition.clone(), json!({ "xs": [0, 1, 2] }), &fake).await;
        assert_eq!(
            execution.output.unwrap_err(),
            ExecutionFailure { error: "Too.Big".into(), cause: "caught: over 1".into(), state: "Stop".into() }
        );
        let execution = run(definition, json!({ "xs": [0, 1] }), &fake).await;
        assert_eq!(execution.output.unwrap(), json!([0, 1]));
    }

    #[tokio::test]
    async fn choice_rules_and_default() {
        let definition = json!({ "StartAt": "Route", "States": {
            "Route": { "Type": "Choice", "Choices": [
                { "And": [{ "Variable": "$.n", "NumericGreaterThan": 10 }, { "Not": { "Variable": "$.kind", "StringEquals": "skip" } }], "Next": "Big" },
                { "Or": [{ "Variable": "$.flag", "BooleanEquals": true }, { "Variable": "$.name", "StringMatches": "seg-*-v\\*" }], "Next": "Flagged" },
                { "Variable": "$.opt", "IsPresent": true, "Next": "HasOpt" },
                { "Variable": "$.n", "NumericLessThanPath": "$.limit", "Next": "Small" },
                { "Variable": "$.n", "IsNull": true, "Next": "Null" }
            ], "Default": "Other" },
            "Big": { "Type": "Pass", "Result": "big", "End": true },
            "Flagged": { "Type": "Pass", "Result": "flagged", "End": true },
            "HasOpt": { "Type": "Pass", "Result": "opt", "End": true },
            "Small": { "Type": "Pass", "Result": "small", "End": true },
            "Null": { "Type": "Pass", "Result": "null", "End": true },
            "Other": { "Type": "Pass", "Result": "other", "End": true } } });
        let fake = Fake::new(|_, _, _| Ok(Value::Null));
        let m = machine(definition);
        let cases = [
            (json!({ "n": 11, "kind": "x", "limit": 0 }), "big"),
            (json!({ "n": 11, "kind": "skip", "flag": true, "limit": 0 }), "flagged"),
            (json!({ "n": 1, "flag": false, "name": "seg-a-v*", "limit": 0 }), "flagged"),
            (json!({ "n": 1, "flag": false, "name": "seg-a-v1", "opt": null, "limit": 0 }), "opt"),
            (json!({ "n": 1, "limit": 5, "flag": false, "name": "x" }), "small"),
            (json!({ "n": null, "limit": 5, "flag": false, "name": "x" }), "null"),
            (json!({ "n": "11", "limit": 5, "flag": false, "name": "x" }), "other"),
        ];
        for (input, expected) in cases {
            let out = execute(&m, input.clone(), &fake, &fast()).await.output;
            assert_eq!(out, Ok(json!(expected)), "input {input}");
        }
        // A missing Variable is a runtime error.
        let out = execute(&m, json!({ "limit": 5 }), &fake, &fast()).await.output.unwrap_err();
        assert_eq!(out.error, "States.Runtime");

        let no_default = json!({ "StartAt": "C", "States": {
            "C": { "Type": "Choice", "Choices": [{ "Variable": "$.x", "StringEquals": "a", "Next": "A" }] },
            "A": pass_end() } });
        let out = run(no_default, json!({ "x": "b" }), &fake).await.output.unwrap_err();
        assert_eq!((out.error.as_str(), out.state.as_str()), ("States.NoChoiceMatched", "C"));
    }

    #[tokio::test]
    async fn lambda_invoke_wraps_the_payload_and_plain_arns_do_not() {
        let definition = json!({ "StartAt": "Invoke", "States": {
            "Invoke": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                        "Parameters": { "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:plan:live", "Payload": { "x.$": "$.x", "fixed": 1 } },
                        "TimeoutSeconds": 60, "HeartbeatSeconds": 10,
                        "ResultPath": "$.invoked", "Next": "Plain" },
            "Plain": { "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:finish",
                       "ResultPath": "$.plain", "Next": "NoPayload" },
            "NoPayload": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                           "Parameters": { "FunctionName": "bare" }, "ResultSelector": { "p.$": "$.Payload" }, "ResultPath": "$.bare", "End": true } } });
        let fake = Fake::new(|f, payload, _| Ok(json!({ "fn": f, "got": payload })));
        let m = machine(definition);
        assert_eq!(
            m.lambda_functions(),
            vec![
                "arn:aws:lambda:us-east-1:123456789012:function:finish",
                "arn:aws:lambda:us-east-1:123456789012:function:plan:live",
                "bare"
            ]
        );
        let out = execute(&m, json!({ "x": 5 }), &fake, &fast()).await.output.unwrap();
        assert_eq!(
            out["invoked"],
            json!({ "ExecutedVersion": "$LATEST", "StatusCode": 200,
                    "Payload": { "fn": "arn:aws:lambda:us-east-1:123456789012:function:plan:live", "got": { "x": 5, "fixed": 1 } } })
        );
        assert_eq!(
            out["plain"],
            json!({ "fn": "arn:aws:lambda:us-east-1:123456789012:function:finish", "got": { "x": 5, "invoked": out["invoked"] } })
        );
        assert_eq!(out["bare"], json!({ "p": { "fn": "bare", "got": {} } }));
        assert_eq!(
            machine(map_definition(1, json!([]))).lambda_functions(),
            vec!["arn:aws:lambda:us-east-1:123456789012:function:commit-fn", "bucket-fn"]
        );
    }

    #[tokio::test]
    async fn segments_shaped_pipeline_runs_end_to_end() {
        let definition = json!({
            "Comment": "Plan -> Choice -> Map buckets -> Map publish -> Commit -> Finish",
            "StartAt": "Plan",
            "States": {
                "Plan": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                          "Parameters": { "FunctionName": "plan", "Payload.$": "$" },
                          "ResultSelector": { "buckets.$": "$.Payload.buckets", "run.$": "$.Payload.run" },
                          "Retry": [{ "ErrorEquals": ["Lambda.ServiceException", "Lambda.TooManyRequestsException"], "MaxAttempts": 2 }],
                          "Next": "AnyWork" },
                "AnyWork": { "Type": "Choice", "Choices": [{ "Variable": "$.buckets[0]", "IsPresent": false, "Next": "Finish" }], "Default": "Buckets" },
                "Buckets": { "Type": "Map", "ItemsPath": "$.buckets", "MaxConcurrency": 3,
                             "ItemSelector": { "bucket.$": "$$.Map.Item.Value", "run.$": "$.run" },
                             "ItemProcessor": { "StartAt": "Evaluate", "States": {
                                 "Evaluate": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                               "Parameters": { "FunctionName": "evaluate", "Payload.$": "$" },
                                               "OutputPath": "$.Payload",
                                               "Retry": [{ "ErrorEquals": ["States.ALL"], "MaxAttempts": 2 }], "End": true } } },
                             "ResultPath": "$.evaluated", "Next": "Publish" },
                "Publish": { "Type": "Map", "ItemsPath": "$.evaluated", "MaxConcurrency": 2,
                             "ItemProcessor": { "StartAt": "Wait", "States": {
                                 "Wait": { "Type": "Wait", "Seconds": 5, "Next": "Send" },
                                 "Send": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                           "Parameters": { "FunctionName": "publish", "Payload.$": "$" }, "ResultPath": null, "End": true } } },
                             "ResultPath": null, "Next": "Commit" },
                "Commit": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": { "FunctionName": "commit", "Payload": { "run.$": "$.run", "count.$": "States.ArrayLength($.evaluated)" } },
                            "ResultPath": null, "Next": "Finish" },
                "Finish": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": { "FunctionName": "finish", "Payload": { "execution.$": "$$.Execution.Name" } },
                            "OutputPath": "$.Payload", "End": true }
            }
        });
        let fake = Fake::new(|f, payload, _| match f {
            "plan" => Ok(json!({ "run": "r9", "buckets": payload["buckets"].clone() })),
            "evaluate" => Ok(json!({ "bucket": payload["bucket"], "rows": 3 })),
            "finish" => Ok(json!({ "status": "done" })),
            _ => Ok(json!({})),
        });
        let m = machine(definition);
        assert_eq!(m.lambda_functions(), vec!["commit", "evaluate", "finish", "plan", "publish"]);
        let execution = execute(&m, json!({ "buckets": ["a", "b"] }), &fake, &fast()).await;
        assert_eq!(execution.output.clone().unwrap(), json!({ "status": "done" }));
        assert_eq!(fake.calls_to("publish"), vec![json!({ "bucket": "a", "rows": 3 }), json!({ "bucket": "b", "rows": 3 })]);
        assert_eq!(fake.calls_to("commit"), vec![json!({ "run": "r9", "count": 2 })]);
        assert!(fake.calls_to("finish")[0]["execution"].as_str().unwrap_or("").starts_with("local-"));

        // No buckets: the Choice goes straight to Finish.
        let fake2 = Fake::new(|f, payload, _| match f {
            "plan" => Ok(json!({ "run": "r0", "buckets": payload["buckets"].clone() })),
            _ => Ok(json!({ "status": "empty" })),
        });
        let execution = execute(&m, json!({ "buckets": [] }), &fake2, &fast()).await;
        assert_eq!(execution.output.clone().unwrap(), json!({ "status": "empty" }));
        assert!(!execution.entered("Buckets"));
    }

    #[test]
    fn execute_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let m = machine(json!({ "StartAt": "A", "States": { "A": pass_end() } }));
        let fake = Fake::new(|_, _, _| Ok(Value::Null));
        let options = fast();
        let future = execute(&m, json!({}), &fake, &options);
        assert_send(&future);
    }

    #[tokio::test]
    async fn bad_inputs_fail_cleanly() {
        let definition = json!({ "StartAt": "M", "States": {
            "M": { "Type": "Map", "ItemsPath": "$.xs", "MaxConcurrencyPath": "$.c",
                   "ItemSelector": { "v.$": "$$.Map.Item.Value.k", "r.$": "States.ArrayGetItem($.xs, 0)" },
                   "ItemProcessor": { "StartAt": "T", "States": { "T": {
                       "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                       "Parameters": { "FunctionName.$": "$.v", "Payload.$": "States.StringToJson($.v)" },
                       "ResultPath": "$.a.b", "End": true } } },
                   "ResultPath": "$.out[1]", "End": true } } });
        let fake = Fake::new(|_, _, _| Ok(json!(1)));
        let m = machine(definition);
        assert!(m.lambda_functions().is_empty(), "a dynamic FunctionName cannot be listed");
        let inputs = [
            json!(null),
            json!("text"),
            json!({ "xs": 5, "c": 1 }),
            json!({ "xs": [1], "c": 1 }),
            json!({ "xs": [{ "k": "f" }], "c": -1 }),
            json!({ "xs": [{ "k": "not json" }], "c": 1 }),
            json!({ "xs": [{ "k": "{\"a\": \"scalar\"}" }], "c": 1 }),
            json!({ "xs": [{ "k": 7 }], "c": 0 }),
            json!({ "xs": [{ "k": "[]" }], "c": 1 }),
            json!({ "xs": [{ "k": "{}" }], "c": 1, "out": [0] }),
        ];
        for input in inputs {
            let failure = execute(&m, input.clone(), &fake, &fast()).await.output.unwrap_err();
            assert_eq!(failure.error, "States.Runtime", "input {input}: {failure:?}");
        }
        let ok = execute(&m, json!({ "xs": [{ "k": "{}" }], "c": 1, "out": [0, 0] }), &fake, &fast()).await;
        assert_eq!(ok.output.unwrap()["out"][1][0]["a"]["b"], json!({ "ExecutedVersion": "$LATEST", "Payload": 1, "StatusCode": 200 }));
    }

    #[tokio::test]
    async fn wait_seconds_path_and_glob() {
        let definition = json!({ "StartAt": "W", "States": {
            "W": { "Type": "Wait", "SecondsPath": "$.s", "OutputPath": "$.v", "End": true } } });
        let fake = Fake::new(|_, _, _| Ok(Value::Null));
        assert_eq!(run(definition.clone(), json!({ "s": 3600, "v": 1 }), &fake).await.output, Ok(json!(1)));
        assert_eq!(run(definition, json!({ "s": "x", "v": 1 }), &fake).await.output.unwrap_err().error, "States.Runtime");
        assert!(glob_match("*.log", "a.log"));
        assert!(glob_match("a*b*c", "aXXbYc"));
        assert!(!glob_match("a*b", "ac"));
        assert!(glob_match("lit\\*", "lit*"));
        assert!(!glob_match("lit\\*", "lits"));
    }
}
