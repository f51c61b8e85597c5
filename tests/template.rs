//! The one template: it passes cfn-lint and checkov, grants each function only what its
//! code uses, alarms on every function and queue, translates, and deploys to moto's
//! CloudFormation with every piece the pipeline relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use ariane_local::LocalStack;
use ariane_shared::model::CHANNELS;
use serde_json::Value;

#[test]
fn template_passes_cfn_lint() {
    let root = ariane_local::repo_root();
    let out = Command::new(root.join(".venv/bin/cfn-lint"))
        .arg(root.join("infra/template.yaml"))
        .output()
        .expect("cfn-lint is installed by scripts/bootstrap.sh");
    assert!(out.status.success(), "cfn-lint:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn template_passes_checkov() {
    let root = ariane_local::repo_root();
    // --skip-download: no call to the Prisma Cloud API (guidelines, severities); the
    // checks themselves are all local.
    let out = Command::new(root.join(".venv/bin/checkov"))
        .arg("-f")
        .arg(root.join("infra/template.yaml"))
        .args(["--framework", "cloudformation", "--quiet", "--compact", "--skip-download"])
        .output()
        .expect("checkov is installed by scripts/bootstrap.sh");
    assert!(out.status.success(), "checkov:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The CloudFormation the template becomes (the SAM transform, offline, as the local stack
/// deploys it): the roles with every statement SAM adds, the event source mappings, alarms.
fn translated() -> Value {
    let root = ariane_local::repo_root();
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("infra/local/stack.py"))
        .arg("translate")
        .output()
        .expect("the venv's python is installed by scripts/bootstrap.sh");
    assert!(out.status.success(), "stack.py translate:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the translated template is JSON")
}

/// A value as text, intrinsics spelled as in `Fn::Sub`: `{"Ref": "X"}` is `${X}`,
/// `{"Fn::GetAtt": ["X", "Arn"]}` is `${X.Arn}`, and a `Fn::Sub` with variables has them
/// substituted (SAM's policy templates: `${bucketName}` becomes `${LakeBucket}`).
fn text(v: &Value) -> String {
    let Some((key, arg)) = v.as_object().filter(|m| m.len() == 1).and_then(|m| m.iter().next()) else {
        return v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    };
    match key.as_str() {
        "Ref" => format!("${{{}}}", text(arg)),
        "Fn::GetAtt" => {
            format!("${{{}}}", arg.as_array().map(|p| p.iter().map(text).collect::<Vec<_>>().join(".")).unwrap_or_else(|| text(arg)))
        }
        "Fn::Sub" => match arg {
            Value::Array(parts) => {
                let mut out = text(&parts[0]);
                for (name, value) in parts.get(1).and_then(Value::as_object).into_iter().flatten() {
                    out = out.replace(&format!("${{{name}}}"), &text(value));
                }
                out
            }
            other => text(other),
        },
        "Fn::Join" => {
            let sep = text(&arg[0]);
            arg[1].as_array().map(|items| items.iter().map(text).collect::<Vec<_>>().join(&sep)).unwrap_or_default()
        }
        _ => v.to_string(),
    }
}

/// A string or a list of them (`Action`, `Resource`), as text.
fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        Value::Null => vec![],
        other => vec![text(other)],
    }
}

/// One Allow statement of a function's role.
#[derive(Debug)]
struct Grant {
    actions: Vec<String>,
    resources: Vec<String>,
    condition: Value,
}

/// Each function (logical id of its `AWS::Lambda::Function`) with its role's managed
/// policy ARNs and Allow statements.
fn function_grants(t: &Value) -> BTreeMap<String, (Vec<String>, Vec<Grant>)> {
    let resources = t["Resources"].as_object().expect("Resources");
    let mut out = BTreeMap::new();
    for (id, r) in resources.iter().filter(|(_, r)| r["Type"] == "AWS::Lambda::Function") {
        let role_id = r["Properties"]["Role"]["Fn::GetAtt"][0].as_str().unwrap_or_else(|| panic!("{id}: Role is not a role of the stack"));
        let role = &resources[role_id]["Properties"];
        let managed = texts(&role["ManagedPolicyArns"]);
        let mut grants = Vec::new();
        for policy in role["Policies"].as_array().into_iter().flatten() {
            let statements = &policy["PolicyDocument"]["Statement"];
            let statements = statements.as_array().cloned().unwrap_or_else(|| vec![statements.clone()]);
            for st in statements.iter().filter(|st| st["Effect"] == "Allow") {
                assert!(st.get("NotAction").is_none() && st.get("NotResource").is_none(), "{id}: NotAction/NotResource in {st}");
                grants.push(Grant { actions: texts(&st["Action"]), resources: texts(&st["Resource"]), condition: st["Condition"].clone() });
            }
        }
        out.insert(id.clone(), (managed, grants));
    }
    out
}

/// The key part of an S3 ARN (`arn:${AWS::Partition}:s3:::${LakeBucket}/events/*` ->
/// `Some("events/*")`), `None` for the bucket itself.
fn s3_key(resource: &str) -> Option<&str> {
    resource.rsplit_once(":::").and_then(|(_, path)| path.split_once('/')).map(|(_, key)| key)
}

/// The `s3:prefix` values a ListBucket statement is conditioned on.
fn listed_prefixes(condition: &Value) -> Vec<String> {
    condition.as_object().into_iter().flatten().filter_map(|(_, keys)| keys.get("s3:prefix")).flat_map(texts).collect()
}

/// The S3 object keys an ingest channel instance may touch: its landing prefix, its
/// events, rejects and ledger, and the ledger of the keys it refuses.
fn channel_prefixes(channel: &str) -> Vec<String> {
    vec![
        format!("{channel}/"),
        format!("events/channel={channel}/"),
        format!("rejects/channel={channel}/"),
        format!("ledger/ingest/{channel}/"),
        "ledger/ingest/unknown/".to_string(),
    ]
}

/// The S3 actions on a bucket itself (not on its objects), granted with an `s3:prefix`
/// condition: what a function lists.
const BUCKET_LISTING: [&str; 2] = ["s3:ListBucket", "s3:ListBucketVersions"];

/// One permission of a role, flattened: an action, a resource, and the condition as
/// `(operator, key) -> values` (order-free).
type Permission = (String, String, BTreeMap<(String, String), BTreeSet<String>>);

/// A role's statements as permissions, one per action and resource.
fn permissions(grants: &[Grant]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for g in grants {
        let mut condition = BTreeMap::new();
        for (operator, keys) in g.condition.as_object().into_iter().flatten() {
            for (key, values) in keys.as_object().into_iter().flatten() {
                condition.insert((operator.clone(), key.clone()), texts(values).into_iter().collect::<BTreeSet<_>>());
            }
        }
        for action in &g.actions {
            for resource in &g.resources {
                out.insert((action.clone(), resource.clone(), condition.clone()));
            }
        }
    }
    out
}

/// A permission without a condition.
fn permission(action: &str, resource: &str) -> Permission {
    (action.to_string(), resource.to_string(), BTreeMap::new())
}

/// The lake prefixes the purge function rewrites: every table that can carry an erased
/// person's rows or hashes, and the erasure reports it reads and rewrites. Not the
/// ingest ledgers (ledger/) nor the campaign reports (reports/campaigns/).
const PURGED_LAKE_PREFIXES: [&str; 10] = [
    "events/",
    "events_by_profile/",
    "rejects/",
    "identity/links/",
    "identity/history/",
    "segments/",
    "activations/",
    "audiences/",
    "measures/",
    "reports/erasures/",
];
const PURGE_LANDING_BUCKET: &str = "arn:${AWS::Partition}:s3:::${LandingBucket}";
const PURGE_LANDING_OBJECTS: &str = "arn:${AWS::Partition}:s3:::${LandingBucket}/*";

/// Everything the purge function's role may do, exactly: list (objects and versions)
/// and rewrite the lake's purged prefixes, deleting objects and versions there; list,
/// read and rewrite every landing export, deleting older versions only; read, query and
/// delete the activation ledger's audience and send items (`AUD#...`, `SEND#...`) and nothing
/// else of it;
/// read the lake pepper; send `forget` requests to identity's queue; park a failed run in
/// its own failure queue (the OnFailure destination SAM grants); delete the person's
/// segment memberships item (`SEGMENTS#...`) and nothing else of the profiles table; no
/// other queue or secret.
fn purge_permissions() -> BTreeSet<Permission> {
    let lake = "arn:${AWS::Partition}:s3:::${LakeBucket}";
    let mut out = BTreeSet::new();
    let listed: BTreeSet<String> = PURGED_LAKE_PREFIXES.iter().map(|p| format!("{p}*")).collect();
    for action in BUCKET_LISTING {
        let condition = BTreeMap::from([(("StringLike".to_string(), "s3:prefix".to_string()), listed.clone())]);
        out.insert((action.to_string(), lake.to_string(), condition));
        out.insert(permission(action, PURGE_LANDING_BUCKET));
    }
    for action in ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"] {
        for prefix in PURGED_LAKE_PREFIXES {
            out.insert(permission(action, &format!("{lake}/{prefix}*")));
        }
    }
    for action in ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObjectVersion"] {
        out.insert(permission(action, PURGE_LANDING_OBJECTS));
    }
    for action in ["dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:Query"] {
        let condition = BTreeMap::from([(
            ("ForAllValues:StringLike".to_string(), "dynamodb:LeadingKeys".to_string()),
            BTreeSet::from(["AUD#*".to_string(), "SEND#*".to_string()]),
        )]);
        out.insert((action.to_string(), "${ActivationLedgerTable.Arn}".to_string(), condition));
    }
    let segments_items = BTreeMap::from([(
        ("ForAllValues:StringLike".to_string(), "dynamodb:LeadingKeys".to_string()),
        BTreeSet::from(["SEGMENTS#*".to_string()]),
    )]);
    out.insert(("dynamodb:DeleteItem".to_string(), "${ProfilesTable.Arn}".to_string(), segments_items));
    out.insert(permission("secretsmanager:GetSecretValue", "${LakePepperSecret}"));
    out.insert(permission("sqs:SendMessage", "${PurgeFailureQueue.Arn}"));
    out.insert(permission("sqs:SendMessage", "${IdentityQueue.Arn}"));
    out
}

#[test]
fn template_grants_least_privilege() {
    let t = translated();
    let resources = t["Resources"].as_object().expect("Resources");
    let functions = function_grants(&t);
    assert_eq!(functions.len(), CHANNELS.len() + 9, "{:?}", functions.keys());
    // The queue each function consumes, from the event source mappings.
    let mut consumed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in resources.values().filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping") {
        let function = r["Properties"]["FunctionName"]["Ref"].as_str().expect("mapping of a function of the stack");
        consumed.entry(function.to_string()).or_default().insert(text(&r["Properties"]["EventSourceArn"]));
    }
    let mut problems = Vec::new();
    for (id, (managed, grants)) in &functions {
        let mut problem = |p: String| problems.push(format!("{id}: {p}"));
        // No AWS-managed policy beyond logs and traces: SAM's SQS event sources would
        // attach AWSLambdaSQSQueueExecutionRole (sqs:* reads on every queue).
        for arn in managed {
            if !arn.ends_with("/AWSLambdaBasicExecutionRole") && !arn.ends_with("/AWSXrayWriteOnlyAccess") {
                problem(format!("managed policy {arn}"));
            }
        }
        let channel = resources[id]["Properties"]["Environment"]["Variables"]["INGEST_CHANNEL"].as_str().filter(|c| *c != "router");
        let mut received = BTreeSet::new();
        for g in grants {
            for action in &g.actions {
                let service = action.split(':').next().unwrap_or_default().to_ascii_lowercase();
                if action == "*" || (["s3", "sqs", "dynamodb"].contains(&service.as_str()) && action.ends_with(":*")) {
                    problem(format!("wildcard action {action}"));
                }
                if !["s3", "sqs", "dynamodb"].contains(&service.as_str()) {
                    continue;
                }
                // The purge function alone reaches every landing export (each may carry
                // an erased person); its grants are checked exactly below.
                let purge_landing = |r: &str| id == "PurgeFunction" && (r == PURGE_LANDING_BUCKET || r == PURGE_LANDING_OBJECTS);
                for r in &g.resources {
                    if r == "*" || r.ends_with(":*") {
                        problem(format!("{action} on {r}"));
                    }
                    if service == "s3" && !purge_landing(r.as_str()) {
                        match s3_key(r) {
                            Some("*") => problem(format!("{action} on a whole bucket: {r}")),
                            None if !BUCKET_LISTING.contains(&action.as_str()) => problem(format!("{action} on the bucket {r}")),
                            _ => {}
                        }
                    }
                }
                if BUCKET_LISTING.contains(&action.as_str())
                    && listed_prefixes(&g.condition).is_empty()
                    && !g.resources.iter().all(|r| purge_landing(r.as_str()))
                {
                    problem(format!("{action} without an s3:prefix condition on {:?}", g.resources));
                }
                // Only the purge function deletes objects (or versions), and the segments
                // function what its daily compaction replaces (the event and link files a
                // committed generation holds, older generations) and its runs' changes.
                let compaction = |r: &String| {
                    s3_key(r).is_some_and(|k| ["events/*", "identity/links/*", "events_by_profile/*", "segments/_runs/*"].contains(&k))
                };
                let segments_compaction = id == "SegmentsFunction" && g.resources.iter().all(compaction);
                if action.starts_with("s3:Delete") && id != "PurgeFunction" && !segments_compaction {
                    problem(format!("{action} on {:?}", g.resources));
                }
                if action == "sqs:ReceiveMessage" {
                    received.extend(g.resources.iter().cloned());
                }
            }
            // An ingest instance touches its own channel's prefixes only.
            if let Some(channel) = channel {
                let allowed = channel_prefixes(channel);
                let keys = g.resources.iter().filter(|_| g.actions.iter().any(|a| a.starts_with("s3:"))).filter_map(|r| s3_key(r));
                for key in keys.map(str::to_string).chain(listed_prefixes(&g.condition)) {
                    if !allowed.iter().any(|p| key.starts_with(p.as_str())) {
                        problem(format!("S3 key {key} outside channel {channel}'s prefixes {allowed:?}"));
                    }
                }
            }
        }
        // Receives from its own event source queue(s) only.
        let own = consumed.get(id).cloned().unwrap_or_default();
        if received != own {
            problem(format!("sqs:ReceiveMessage on {received:?}, consumes {own:?}"));
        }
    }

    // Segments: pseudonymous profile attributes only, no write but its memberships items
    // (`SEGMENTS#<pid>`, updated), no raw data.
    let (_, segments) = &functions["SegmentsFunction"];
    for g in segments {
        for action in g.actions.iter().filter(|a| a.starts_with("dynamodb:")) {
            if action == "dynamodb:UpdateItem" {
                let leading = texts(&g.condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
                if leading != ["SEGMENTS#*"] || g.resources != ["${ProfilesTable.Arn}"] {
                    problems.push(format!("SegmentsFunction: UpdateItem beyond its memberships items: {:?} {}", g.resources, g.condition));
                }
                continue;
            }
            if action != "dynamodb:Scan" {
                problems.push(format!("SegmentsFunction: {action} (the snapshot is a Scan, the memberships an UpdateItem, nothing else)"));
            }
            let attributes: BTreeSet<String> =
                texts(&g.condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]).into_iter().collect();
            for clear in ["email", "phone", "first_name", "last_name", "postal_code", "city", "doc"] {
                if attributes.contains(clear) {
                    problems.push(format!("SegmentsFunction: may read the profile attribute {clear}"));
                }
            }
            if attributes.is_empty() || g.condition["StringEquals"]["dynamodb:Select"] != "SPECIFIC_ATTRIBUTES" {
                problems.push(format!("SegmentsFunction: {action} not limited to specific attributes: {}", g.condition));
            }
        }
        for r in g.resources.iter().filter_map(|r| s3_key(r)).chain(listed_prefixes(&g.condition).iter().map(String::as_str)) {
            if ["rejects/", "ledger/", "audiences/", "identity/history/"].iter().any(|p| r.starts_with(p)) {
                problems.push(format!("SegmentsFunction: reaches {r}"));
            }
        }
    }

    // Journey: reads identity items (not a large operation's) and the lake's events; writes
    // nothing anywhere.
    let (_, journey) = &functions["JourneyFunction"];
    for g in journey {
        for action in &g.actions {
            let read = [
                "dynamodb:BatchGetItem",
                "s3:GetObject",
                "s3:ListBucket",
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret",
            ];
            if !read.contains(&action.as_str()) {
                problems.push(format!("JourneyFunction: {action} (it only reads)"));
            }
            if action == "dynamodb:BatchGetItem" {
                let keys: BTreeSet<String> = texts(&g.condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]).into_iter().collect();
                let expected: BTreeSet<String> = ["PROFILE#*", "ALIAS#*", "ID#*", "EV#*", "COMP#*"].map(String::from).into();
                if keys != expected {
                    problems.push(format!("JourneyFunction: {action} on leading keys {keys:?}, not {expected:?}"));
                }
            }
        }
        for r in g.resources.iter().filter_map(|r| s3_key(r)).chain(listed_prefixes(&g.condition).iter().map(String::as_str)) {
            if !["events/", "events_by_profile/", "identity/links/"].iter().any(|p| r.starts_with(p)) {
                problems.push(format!("JourneyFunction: reaches {r}"));
            }
        }
    }

    // Profile API: exactly these reads, no more. GetItem on identifier, memberships and
    // alias items only: never identity's PROFILE# item (clear data); nothing written.
    let (_, profile_api) = &functions["ProfileApiFunction"];
    let granted = permissions(profile_api);
    let leading = BTreeMap::from([(
        ("ForAllValues:StringLike".to_string(), "dynamodb:LeadingKeys".to_string()),
        BTreeSet::from(["ID#*".to_string(), "SEGMENTS#*".to_string(), "ALIAS#*".to_string()]),
    )]);
    let expected = BTreeSet::from([
        ("dynamodb:GetItem".to_string(), "${ProfilesTable.Arn}".to_string(), leading),
        permission("secretsmanager:GetSecretValue", "${ProfileTokenSecret}"),
        permission("secretsmanager:GetSecretValue", "${LakePepperSecret}"),
    ]);
    if granted != expected {
        problems.push(format!("ProfileApiFunction: granted {granted:?}, expected {expected:?}"));
    }

    // Purge: exactly its table of permissions, no more (a broader action, resource or a
    // looser condition is an extra permission) and no less.
    let (_, purge) = &functions["PurgeFunction"];
    let granted = permissions(purge);
    let expected = purge_permissions();
    for (action, resource, condition) in granted.difference(&expected) {
        problems.push(format!("PurgeFunction: unexpected {action} on {resource} (condition {condition:?})"));
    }
    for (action, resource, condition) in expected.difference(&granted) {
        problems.push(format!("PurgeFunction: missing {action} on {resource} (condition {condition:?})"));
    }
    assert!(problems.is_empty(), "least privilege:\n{}", problems.join("\n"));
}

#[test]
fn template_alarms_on_every_function_and_queue() {
    let t = translated();
    let resources = t["Resources"].as_object().expect("Resources");
    let alarms: Vec<&Value> = resources.values().filter(|r| r["Type"] == "AWS::CloudWatch::Alarm").map(|r| &r["Properties"]).collect();
    let alarm_on = |namespace: &str, metric: &str, dimension: &Value| -> Option<&Value> {
        alarms
            .iter()
            .copied()
            .find(|a| a["Namespace"] == namespace && a["MetricName"] == metric && a["Dimensions"][0]["Value"] == *dimension)
    };
    let mut problems = Vec::new();
    for a in &alarms {
        if !texts(&a["AlarmActions"]).contains(&"${AlarmTopic}".to_string()) {
            problems.push(format!("alarm {} does not notify AlarmTopic", text(&a["AlarmName"])));
        }
    }
    for id in resources.iter().filter(|(_, r)| r["Type"] == "AWS::Lambda::Function").map(|(id, _)| id) {
        let dimension = serde_json::json!({ "Ref": id });
        for metric in ["Errors", "Throttles"] {
            if alarm_on("AWS/Lambda", metric, &dimension).is_none() {
                problems.push(format!("{id}: no {metric} alarm"));
            }
        }
    }
    // Where failed messages and invocations end up: redrive DLQs, Lambda's OnFailure
    // destinations and EventBridge targets' dead-letter queues.
    let mut dead_letters = BTreeSet::new();
    for r in resources.values() {
        let p = &r["Properties"];
        dead_letters.insert(text(&p["RedrivePolicy"]["deadLetterTargetArn"]));
        dead_letters.insert(text(&p["DestinationConfig"]["OnFailure"]["Destination"]));
        for target in p["Targets"].as_array().into_iter().flatten() {
            dead_letters.insert(text(&target["DeadLetterConfig"]["Arn"]));
        }
    }
    for (id, queue) in resources.iter().filter(|(_, r)| r["Type"] == "AWS::SQS::Queue") {
        let dimension = serde_json::json!({ "Fn::GetAtt": [id, "QueueName"] });
        if dead_letters.contains(&format!("${{{id}.Arn}}")) {
            if alarm_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", &dimension).is_none() {
                problems.push(format!("{id} (dead letters): no alarm on its visible messages"));
            }
            continue;
        }
        match alarm_on("AWS/SQS", "ApproximateAgeOfOldestMessage", &dimension) {
            None => problems.push(format!("{id}: no alarm on the age of its oldest message")),
            Some(a) => {
                // A message retried once (back after the visibility timeout) is no alarm.
                let visibility = queue["Properties"]["VisibilityTimeout"].as_f64().unwrap_or(30.0);
                if a["Threshold"].as_f64().unwrap_or(0.0) <= visibility {
                    problems.push(format!("{id}: age alarm threshold {} within the visibility timeout {visibility}", a["Threshold"]));
                }
            }
        }
    }
    // The scheduled segments, purge and measures functions: failed runs and undeliverable ticks
    // are kept, each in its own failure queue (alarmed above as dead letters).
    for (function, queue) in
        [("SegmentsFunction", "SegmentsFailureQueue"), ("PurgeFunction", "PurgeFailureQueue"), ("MeasuresFunction", "MeasuresFailureQueue")]
    {
        let failure_queue = format!("${{{queue}.Arn}}");
        let invoke_config = resources
            .values()
            .find(|r| r["Type"] == "AWS::Lambda::EventInvokeConfig" && r["Properties"]["FunctionName"]["Ref"] == function);
        match invoke_config.map(|r| text(&r["Properties"]["DestinationConfig"]["OnFailure"]["Destination"])) {
            Some(destination) if destination == failure_queue => {}
            other => problems.push(format!("{function}: failed asynchronous invocations go to {other:?}, not {failure_queue}")),
        }
        // The segments schedule starts the state machine whose tasks invoke the function.
        let target = match function {
            "SegmentsFunction" => "${SegmentsStateMachine}".to_string(),
            _ => format!("${{{function}.Arn}}"),
        };
        let schedule =
            resources.values().find(|r| r["Type"] == "AWS::Events::Rule" && text(&r["Properties"]["Targets"][0]["Arn"]) == target);
        match schedule.map(|r| text(&r["Properties"]["Targets"][0]["DeadLetterConfig"]["Arn"])) {
            Some(dlq) if dlq == failure_queue => {}
            other => problems.push(format!("{function}'s schedule: undeliverable ticks go to {other:?}, not {failure_queue}")),
        }
    }
    // Every checkov skip says why.
    for (id, r) in resources {
        for skip in r["Metadata"]["checkov"]["skip"].as_array().into_iter().flatten() {
            if skip["comment"].as_str().is_none_or(|c| c.len() < 40) {
                problems.push(format!("{id}: checkov skip {} without a reason", skip["id"]));
            }
        }
    }
    assert!(problems.is_empty(), "alarms:\n{}", problems.join("\n"));
}

/// The channel directories of `channels/` (each holds `<format>.toml` spec files).
fn channel_dirs() -> BTreeSet<String> {
    let dir = ariane_local::repo_root().join("channels");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// `pos` -> `Pos`: the channel's part of its logical ids (IngestPosFunction, ...).
fn camel(channel: &str) -> String {
    let mut chars = channel.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_deploys_to_moto_with_the_pipeline_wiring() -> anyhow::Result<()> {
    let stack = LocalStack::start("tpl", &[]).await?;
    let m = &stack.manifest;
    let dirs = channel_dirs();
    assert!(!dirs.is_empty(), "channels/ has channel directories");

    // The same `ingest` binary runs once per channel and once as the landing router.
    let mut binaries: Vec<&str> = m.functions.values().map(|f| f.binary.as_str()).collect();
    binaries.sort();
    let mut expected = vec!["activate", "collect", "identity", "journey", "measures", "profile-api", "purge", "segments"];
    expected.extend(std::iter::repeat_n("ingest", dirs.len() + 1));
    expected.sort();
    assert_eq!(binaries, expected);
    for f in m.functions.values() {
        assert!(f.function_name.starts_with("ariane-tpl-"), "Stage in names: {}", f.function_name);
    }

    // Every ingest instance, the identity, activate and collect functions read a queue.
    assert_eq!(m.event_source_mappings.len(), dirs.len() + 1 + 3, "{:#?}", m.event_source_mappings);
    for esm in &m.event_source_mappings {
        assert!(esm.report_batch_item_failures, "{esm:?}");
        let (_, queue) = m.queue_by_arn(&esm.queue_arn).expect("mapped queue in the stack");
        let timeout = m.function(&esm.function)?.timeout_s;
        assert!(queue.visibility_timeout_s >= 6 * timeout, "{esm:?}: visibility {} < 6 x {timeout}", queue.visibility_timeout_s);
        assert!(queue.dlq_url.is_some(), "{esm:?} has a DLQ");
        assert_eq!(queue.max_receive_count, Some(5));
        // Ingest parks what no retry can fix in that same DLQ (and may send to it).
        let f = m.function(&esm.function)?;
        if f.binary == "ingest" {
            assert_eq!(f.environment.get("DEAD_LETTER_QUEUE_URL"), queue.dlq_url.as_ref(), "{}", esm.function);
        }
    }
    // Activation's claim lease outlasts the function, as the function itself checks.
    let activate = m.function("ActivateFunction")?;
    let lease: u32 = activate.environment.get("CLAIM_LEASE_SECONDS").map_or(Ok(120), |v| v.parse())?;
    assert!(lease > activate.timeout_s, "CLAIM_LEASE_SECONDS {lease} must exceed the timeout {}", activate.timeout_s);
    // Every consumer has a concurrency cap its SQS event source does not exceed (throttled
    // receives would drift messages to the DLQ).
    for esm in &m.event_source_mappings {
        let f = m.function(&esm.function)?;
        let reserved = f.reserved_concurrency.unwrap_or_else(|| panic!("{} has reserved concurrency", esm.function));
        let max = esm.maximum_concurrency.unwrap_or_else(|| panic!("{}'s mapping has a maximum concurrency", esm.function));
        assert!((2..=reserved).contains(&max), "{}: maximum concurrency {max}, reserved {reserved}", esm.function);
    }
    // Real time: the collector's HTTP API and routes (created in moto, served by the
    // runner), and the timer of the triggered campaigns: the every-minute release.
    let api = m.http_apis.get("CollectApi").expect("the collector's HTTP API is deployed");
    assert!(!api.api_id.is_empty());
    let routes: Vec<(&str, &str)> = api.routes.iter().map(|(k, f)| (k.as_str(), f.as_str())).collect();
    assert_eq!(routes, vec![("OPTIONS /v1/batch", "CollectFunction"), ("POST /v1/batch", "CollectFunction")]);
    // The profile API on an HTTP API of its own.
    let api = m.http_apis.get("ProfileApi").expect("the profile API is deployed");
    let routes: Vec<(&str, &str)> = api.routes.iter().map(|(k, f)| (k.as_str(), f.as_str())).collect();
    assert_eq!(routes, vec![("GET /v1/profile", "ProfileApiFunction"), ("OPTIONS /v1/profile", "ProfileApiFunction")]);
    // (moto's CloudFormation leaves the API's id unresolved in the endpoint's `Sub`.)
    assert!(m.outputs.contains_key("ProfileEndpoint"), "{:?}", m.outputs);
    assert!(m.outputs.get("ProfileTokenSecretArn").is_some_and(|a| a.starts_with("arn:aws:secretsmanager:")), "{:?}", m.outputs);
    let release = m.schedules.iter().find(|s| s.function.as_deref() == Some("ActivateFunction")).expect("the release schedule");
    assert_eq!(release.schedule_expression.as_deref(), Some("rate(1 minute)"));
    assert_eq!(m.function("IdentityFunction")?.environment.get("ACTIVATION_QUEUE_URL"), Some(&m.queues["ActivationQueue"].url));
    let mapped: BTreeSet<&str> = m.event_source_mappings.iter().map(|e| e.function.as_str()).collect();
    assert!(mapped.contains("IdentityFunction") && mapped.contains("ActivateFunction"), "{mapped:?}");

    // One catch-all notification, to the landing router's queue.
    let landing_queue = &m.queues["LandingQueue"];
    assert_eq!(m.bucket_notifications.len(), 1, "{:?}", m.bucket_notifications);
    let n = &m.bucket_notifications[0];
    assert_eq!(n.bucket, stack.landing_bucket());
    assert_eq!(n.queue_arn, landing_queue.arn);
    assert_eq!(n.events, vec!["s3:ObjectCreated:*".to_string()]);
    assert_eq!((n.prefix.as_deref(), n.suffix.as_deref()), (None, None), "no key filter");
    // Only the landing bucket may send to the landing queue; no other queue takes S3 events.
    let policy = stack
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&landing_queue.url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::Policy)
        .send()
        .await?;
    let policy = policy.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::Policy)).cloned().unwrap_or_default();
    assert!(policy.contains("s3.amazonaws.com") && policy.contains(stack.landing_bucket()), "{policy}");

    // The router: fed by the landing queue, one CHANNEL_QUEUE_URLS entry per channel.
    let (router_id, router) = m.ingest_instance("router")?;
    assert_eq!(router_id, "LandingRouterFunction");
    assert_eq!(m.queue_of(router_id)?.0, "LandingQueue");
    let routes: Vec<(&str, &str)> = router.environment["CHANNEL_QUEUE_URLS"]
        .split(',')
        .map(|e| e.split_once('=').unwrap_or_else(|| panic!("{e:?} is not channel=url")))
        .collect();
    let routed: BTreeSet<String> = routes.iter().map(|(c, _)| c.to_string()).collect();
    assert_eq!(routes.len(), routed.len(), "one route per channel: {routes:?}");
    assert_eq!(routed, dirs, "CHANNEL_QUEUE_URLS covers exactly the channel directories");
    for key in ["LANDING_BUCKET", "LAKE_BUCKET"] {
        assert!(router.environment.contains_key(key), "router env {key}");
    }

    // One instance per channel directory, reading its own queue, which the router targets.
    for channel in &dirs {
        let id = format!("Ingest{}Function", camel(channel));
        let f = m.function(&id)?;
        assert_eq!(f.binary, "ingest");
        assert_eq!(f.environment.get("INGEST_CHANNEL"), Some(channel), "{id}");
        for key in ["LANDING_BUCKET", "LAKE_BUCKET", "IDENTITY_QUEUE_URL"] {
            assert!(f.environment.contains_key(key), "{id} env {key}");
        }
        assert_eq!(f.function_name, format!("ariane-tpl-ingest-{channel}"));
        assert!(f.memory_mb >= 512, "{id}: {}", f.memory_mb);
        assert_eq!((f.timeout_s, f.ephemeral_storage_mb), (900, Some(2048)), "{id}");
        let (queue_id, queue) = m.queue_of(&id)?;
        assert_eq!(queue_id, format!("Ingest{}Queue", camel(channel)));
        assert!(routes.contains(&(channel.as_str(), queue.url.as_str())), "{channel}: {} not in CHANNEL_QUEUE_URLS {routes:?}", queue.url);
        let esm = m.event_source_mappings.iter().find(|e| e.function == id).expect("mapping");
        assert_eq!(esm.batch_size, 1, "{id}: one file per invocation");
        let reserved = f.reserved_concurrency.unwrap_or_else(|| panic!("{id} has reserved concurrency"));
        let max = esm.maximum_concurrency.unwrap_or_else(|| panic!("{id}'s mapping has a maximum concurrency"));
        assert!(max <= reserved, "{id}: maximum concurrency {max} > reserved {reserved} (throttled receives would drift to the DLQ)");
        m.output(&format!("Ingest{}QueueUrl", camel(channel)))?;
        m.output(&format!("Ingest{}DLQUrl", camel(channel)))?;
        m.output(&format!("Ingest{}FunctionName", camel(channel)))?;
    }
    // Rust's channel list and the channel directories agree.
    let listed: BTreeSet<String> = CHANNELS.iter().map(|c| c.to_string()).collect();
    assert_eq!(listed, dirs, "shared::model::CHANNELS vs channels/");

    // Four schedules: segments (hourly), the release of quiet-hours deferrals, the purge
    // of erased people and the measures (daily).
    let scheduled: BTreeSet<&str> = m
        .schedules
        .iter()
        .filter_map(|s| s.function.as_deref())
        .map(|id| m.function(id).map(|f| f.binary.as_str()).unwrap_or("?"))
        .collect();
    assert_eq!(scheduled, ["activate", "measures", "purge"].into_iter().collect(), "{:?}", m.schedules);
    // Segments: the schedule starts the state machine, whose every task invokes the
    // segments function with a step; the Map states iterate over the plan's buckets.
    let machines: Vec<&str> = m.schedules.iter().filter_map(|s| s.state_machine.as_deref()).collect();
    assert_eq!(machines, ["SegmentsStateMachine"], "{:?}", m.schedules);
    let definition = &m.state_machine("SegmentsStateMachine")?.definition;
    let machine = ariane_local::states::StateMachine::parse(&definition.to_string())?;
    let invoked: BTreeSet<&str> = machine.lambda_functions().iter().map(|arn| m.function_by_arn(arn)).collect::<anyhow::Result<_>>()?;
    assert_eq!(invoked, ["SegmentsFunction"].into());
    for map in ["Buckets", "Publish"] {
        assert_eq!(definition["States"][map]["Type"], "Map", "{map}");
        assert_eq!(definition["States"][map]["ItemsPath"], "$.plan.buckets", "{map}");
    }
    let segments = m.function("SegmentsFunction")?;
    let partitions: usize = segments.environment["ARIANE_SEGMENT_PARTITIONS"].parse()?;
    assert!(partitions >= 2, "segments run in several buckets by default: {partitions}");
    assert_eq!(
        segments.reserved_concurrency,
        Some(segments.environment["ARIANE_SEGMENT_CONCURRENCY"].parse()?),
        "one invocation per bucket at once"
    );

    // The activate function: the destinations config/activation.toml declares, each with
    // a URL, and the signing secret the local stack created from the template.
    let activate = m.function("ActivateFunction")?;
    let rules = ariane_activate::rules::Rules::embedded()?;
    let urls = ariane_activate::webhook::parse_destinations(&activate.environment["WEBHOOK_DESTINATIONS"]).map_err(anyhow::Error::msg)?;
    assert_eq!(
        urls.keys().collect::<BTreeSet<_>>(),
        rules.destinations.keys().collect::<BTreeSet<_>>(),
        "WEBHOOK_DESTINATIONS in the template vs [destinations] in config/activation.toml"
    );
    let secret_arn = &activate.environment["WEBHOOK_SECRET_ARN"];
    assert!(secret_arn.starts_with("arn:aws:secretsmanager:"), "{secret_arn}");
    assert_eq!(m.output("WebhookSigningSecretArn")?, secret_arn);
    for key in ["LAKE_BUCKET", "ACTIVATION_QUEUE_URL", "ACTIVATION_EVENTS_QUEUE_URL", "ACTIVATION_LEDGER_TABLE", "PROFILES_TABLE"] {
        assert!(activate.environment.contains_key(key), "activate env {key}");
    }
    // Every campaign validates against the deployed destinations (the function refuses
    // to start otherwise).
    let env = m.function_env("ActivateFunction")?;
    ariane_activate::Activate::from_env(&env).await?;
    for output in [
        "LandingBucketName",
        "LakeBucketName",
        "ProfilesTableName",
        "LandingQueueUrl",
        "LandingDLQUrl",
        "LandingRouterFunctionName",
        "IdentityQueueUrl",
        "ActivationQueueUrl",
        "ActivationEventsQueueUrl",
        "PurgeFunctionName",
        "MeasuresFunctionName",
        "JourneyFunctionName",
    ] {
        m.output(output)?;
    }
    Ok(())
}
