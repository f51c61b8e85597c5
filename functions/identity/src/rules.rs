//! Identity rules: identifier types with priority, role and limits, blocked values and
//! patterns, trait survivorship. Read from `config/identity.toml` (embedded at build time)
//! and validated before deployment (`ariane-local validate`) and at every cold start.

use std::collections::{BTreeMap, HashMap, HashSet};

use ariane_shared::identifiers::IdentifierKind;
use ariane_shared::model::CHANNELS;
use serde::Deserialize;

/// The rules file deployed with the function.
pub const EMBEDDED_PATH: &str = "config/identity.toml";
pub const EMBEDDED: &str = include_str!("../../../config/identity.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Merge,
    Attach,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeRule {
    pub kind: IdentifierKind,
    pub role: Role,
    pub limit: usize,
    pub window_days: Option<u32>,
    /// 0 = most trusted.
    pub priority: usize,
    /// How two written values are compared for linking (the lookup form); the profile
    /// keeps every value as written, for sending.
    pub fold: Fold,
}

/// The lookup form of a value: which written differences do not make another identifier.
/// Only e-mails have options; the default folds nothing beyond ingest's normalisation
/// (trimmed, lowercase).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fold {
    /// `hélène@x.fr` and `helene@x.fr` are one identifier.
    pub accents: bool,
    /// `marie+promo@x.fr` and `marie@x.fr` are one identifier (the tag after `+` in the
    /// part before `@`).
    pub plus_tags: bool,
    /// At Gmail (`gmail.com`, `googlemail.com`), the dots of the part before `@` do not
    /// count: `marie.dupont@gmail.com` is `mariedupont@gmail.com`.
    pub provider_dots: bool,
}

/// The fold options of `[[types]] fold`, by name.
pub const FOLD_OPTIONS: &[&str] = &["accents", "plus_tags", "provider_dots"];

/// Domains whose mailboxes ignore dots in the part before `@`.
const DOTLESS_DOMAINS: &[&str] = &["gmail.com", "googlemail.com"];

impl Fold {
    fn parse(kind: IdentifierKind, options: &[String]) -> Result<Fold, String> {
        let mut fold = Fold::default();
        if !options.is_empty() && kind != IdentifierKind::Email {
            return Err(format!("{kind}: fold applies to email only (other kinds are compared as normalised)"));
        }
        for o in options {
            match o.as_str() {
                "accents" => fold.accents = true,
                "plus_tags" => fold.plus_tags = true,
                "provider_dots" => fold.provider_dots = true,
                other => return Err(format!("{kind}: unknown fold option {other:?} (known: {})", FOLD_OPTIONS.join(", "))),
            }
        }
        Ok(fold)
    }

    /// The lookup form of a normalised e-mail (unchanged when nothing applies).
    pub fn email<'a>(&self, email: &'a str) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        let Some((local, domain)) = email.rsplit_once('@') else { return Cow::Borrowed(email) };
        let mut local: Cow<str> = Cow::Borrowed(local);
        let mut domain: Cow<str> = Cow::Borrowed(domain);
        if self.accents && !email.is_ascii() {
            local = Cow::Owned(strip_accents(&local));
            domain = Cow::Owned(strip_accents(&domain));
        }
        if self.plus_tags {
            if let Some(i) = local.find('+').filter(|i| *i > 0) {
                local = Cow::Owned(local[..i].to_string());
            }
        }
        if self.provider_dots && DOTLESS_DOMAINS.contains(&domain.as_ref()) && local.contains('.') {
            local = Cow::Owned(local.replace('.', ""));
        }
        match (local, domain) {
            (Cow::Borrowed(_), Cow::Borrowed(_)) => Cow::Borrowed(email),
            (l, d) => Cow::Owned(format!("{l}@{d}")),
        }
    }
}

/// Removes diacritics (canonical decomposition, combining marks dropped): `é` → `e`,
/// `ç` → `c`; `ß`, `æ` and `ø` have no decomposition and stay.
fn strip_accents(s: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    s.nfd().filter(|c| !is_combining_mark(*c)).nfc().collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Survivorship {
    Latest,
    Source,
}

/// Validated rules.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Indexed by `IdentifierKind as usize`; `None` = the type is ignored.
    types: [Option<TypeRule>; 7],
    blocked_any: HashSet<String>,
    blocked: HashSet<(IdentifierKind, String)>,
    patterns: Vec<(Option<IdentifierKind>, String)>,
    /// Trait name → rule.
    pub traits: BTreeMap<String, Survivorship>,
    pub default_survivorship: Survivorship,
    /// Channel → rank (0 = most trusted); unknown channels rank last.
    source_rank: HashMap<String, usize>,
    pub max_component_evidence: usize,
    /// Where phone numbers without a country code are read (erasure and repair requests,
    /// lookups): the same normalisation ingest applies.
    pub phone_region: phonenumber::country::Id,
}

/// A rules file problem, named like the channel-spec errors: `file: path: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {problem}")]
pub struct RulesError {
    pub file: String,
    pub path: String,
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    types: Vec<RawType>,
    #[serde(default)]
    blocked: RawBlocked,
    #[serde(default)]
    traits: Option<toml::Table>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default = "default_phone_region")]
    phone_region: String,
}

fn default_phone_region() -> String {
    "FR".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    kind: String,
    role: Role,
    limit: usize,
    #[serde(default)]
    window_days: Option<u32>,
    #[serde(default)]
    fold: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawBlocked {
    #[serde(default)]
    any: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(flatten)]
    per_kind: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_max_component")]
    max_component_evidence: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits { max_component_evidence: default_max_component() }
    }
}

fn default_max_component() -> usize {
    600
}

/// The most evidence sets a component item holds within the resolver's item size
/// (about 500 bytes each with four identifiers; see the test that builds one).
pub const MAX_COMPONENT_EVIDENCE: usize = 700;

/// Traits with a survivorship rule; `email` and `phone` are the contact pseudo-traits (the
/// address activation uses), always one of the identifiers the profile holds.
pub const TRAIT_NAMES: &[&str] = &["first_name", "last_name", "street", "postal_code", "city", "country", "email", "phone"];

pub fn parse_kind(s: &str) -> Option<IdentifierKind> {
    ALL_KINDS.iter().copied().find(|k| k.as_str() == s)
}

pub const ALL_KINDS: [IdentifierKind; 7] = [
    IdentifierKind::CustomerId,
    IdentifierKind::Email,
    IdentifierKind::Phone,
    IdentifierKind::LoyaltyCard,
    IdentifierKind::DeviceId,
    IdentifierKind::PushToken,
    IdentifierKind::CookieId,
];

impl Rules {
    /// The embedded `config/identity.toml`.
    pub fn embedded() -> Result<Rules, RulesError> {
        Rules::parse(EMBEDDED_PATH, EMBEDDED)
    }

    /// The text of the embedded rules file (`config/identity.toml`).
    pub fn embedded_text() -> &'static str {
        EMBEDDED
    }

    pub fn parse(file: &str, text: &str) -> Result<Rules, RulesError> {
        let err = |path: &str, problem: String| RulesError { file: file.to_string(), path: path.to_string(), problem };
        let raw: RawRules = toml::from_str(text).map_err(|e| err("toml", e.message().to_string()))?;
        let mut types: [Option<TypeRule>; 7] = Default::default();
        if raw.types.is_empty() {
            return Err(err("types", "at least one identifier type is required".into()));
        }
        for (priority, t) in raw.types.iter().enumerate() {
            let path = format!("types[{priority}]");
            let kind =
                parse_kind(&t.kind).ok_or_else(|| err(&path, format!("unknown identifier kind {:?} (known: {})", t.kind, kind_list())))?;
            if types[kind as usize].is_some() {
                return Err(err(&path, format!("{kind} is listed twice")));
            }
            if t.limit == 0 {
                return Err(err(&path, format!("{kind}: limit must be at least 1")));
            }
            if t.window_days == Some(0) {
                return Err(err(&path, format!("{kind}: window_days must be at least 1")));
            }
            let fold = Fold::parse(kind, &t.fold).map_err(|problem| err(&path, problem))?;
            types[kind as usize] = Some(TypeRule { kind, role: t.role, limit: t.limit, window_days: t.window_days, priority, fold });
        }
        if !types.iter().flatten().any(|t| t.role == Role::Merge) {
            return Err(err("types", "at least one type must have role = \"merge\"".into()));
        }
        let mut blocked = HashSet::new();
        for (name, values) in &raw.blocked.per_kind {
            let kind = parse_kind(name)
                .ok_or_else(|| err(&format!("blocked.{name}"), format!("unknown identifier kind (known: {})", kind_list())))?;
            for v in values {
                blocked.insert((kind, v.trim().to_lowercase()));
            }
        }
        let mut patterns = Vec::new();
        for p in &raw.blocked.patterns {
            let (kind, pat) = match p.split_once(':') {
                Some((k, rest)) if parse_kind(k).is_some() => (parse_kind(k), rest),
                _ => (None, p.as_str()),
            };
            if pat.is_empty() || pat.chars().all(|c| c == '*') {
                return Err(err("blocked.patterns", format!("{p:?} would block every value")));
            }
            patterns.push((kind, pat.to_lowercase()));
        }
        let mut traits = BTreeMap::new();
        let mut default_survivorship = Survivorship::Latest;
        let mut source_rank = HashMap::new();
        if let Some(table) = raw.traits {
            for (key, value) in table {
                let path = format!("traits.{key}");
                match key.as_str() {
                    "source_priority" => {
                        let list = value.as_array().ok_or_else(|| err(&path, "must be a list of channels".into()))?;
                        for (rank, c) in list.iter().enumerate() {
                            let c = c.as_str().ok_or_else(|| err(&path, "must be a list of channels".into()))?;
                            if !CHANNELS.contains(&c) {
                                return Err(err(&path, format!("unknown channel {c:?} (known: {})", CHANNELS.join(", "))));
                            }
                            source_rank.insert(c.to_string(), rank);
                        }
                    }
                    _ => {
                        let rule = match value.as_str() {
                            Some("latest") => Survivorship::Latest,
                            Some("source") => Survivorship::Source,
                            _ => return Err(err(&path, "must be \"latest\" or \"source\"".into())),
                        };
                        if key == "default" {
                            default_survivorship = rule;
                        } else if TRAIT_NAMES.contains(&key.as_str()) {
                            traits.insert(key, rule);
                        } else {
                            return Err(err(&path, format!("unknown trait (known: {})", TRAIT_NAMES.join(", "))));
                        }
                    }
                }
            }
        }
        let uses_source = default_survivorship == Survivorship::Source || traits.values().any(|r| *r == Survivorship::Source);
        if uses_source && source_rank.is_empty() {
            return Err(err("traits.source_priority", "a trait uses \"source\" survivorship but no source_priority is given".into()));
        }
        if !(10..=MAX_COMPONENT_EVIDENCE).contains(&raw.limits.max_component_evidence) {
            return Err(err(
                "limits.max_component_evidence",
                format!(
                    "{} is out of range: between 10 and {MAX_COMPONENT_EVIDENCE} (a component is one DynamoDB item, at most 400 KB, about 500 bytes per evidence set)",
                    raw.limits.max_component_evidence
                ),
            ));
        }
        let phone_region = ariane_shared::identifiers::phone_region(&raw.phone_region)
            .ok_or_else(|| err("phone_region", format!("{:?} is not a region code such as FR", raw.phone_region)))?;
        Ok(Rules {
            phone_region,
            types,
            blocked_any: raw.blocked.any.iter().map(|v| v.trim().to_lowercase()).collect(),
            blocked,
            patterns,
            traits,
            default_survivorship,
            source_rank,
            max_component_evidence: raw.limits.max_component_evidence,
        })
    }

    pub fn rule(&self, kind: IdentifierKind) -> Option<&TypeRule> {
        self.types[kind as usize].as_ref()
    }

    /// Priority rank of a kind (0 = most trusted); ignored kinds rank last.
    pub fn priority(&self, kind: IdentifierKind) -> usize {
        self.rule(kind).map_or(usize::MAX, |r| r.priority)
    }

    pub fn role(&self, kind: IdentifierKind) -> Option<Role> {
        self.rule(kind).map(|r| r.role)
    }

    /// Whether a (normalised) value may act as an identifier of this kind.
    pub fn usable(&self, kind: IdentifierKind, value: &str) -> bool {
        if self.rule(kind).is_none() {
            return false;
        }
        let v = value.trim().to_lowercase();
        if v.is_empty() || self.blocked_any.contains(&v) || self.blocked.contains(&(kind, v.clone())) {
            return false;
        }
        !self.patterns.iter().any(|(k, p)| k.is_none_or(|k| k == kind) && glob(p, &v))
    }

    /// The lookup form of a normalised value (see [`Fold`]).
    pub fn lookup_form<'a>(&self, kind: IdentifierKind, value: &'a str) -> std::borrow::Cow<'a, str> {
        match self.rule(kind) {
            Some(r) if kind == IdentifierKind::Email => r.fold.email(value),
            _ => std::borrow::Cow::Borrowed(value),
        }
    }

    /// The reference (kind and keyed hash of the lookup form) every item, link and
    /// decision uses for an identifier.
    pub fn id_ref(&self, i: &ariane_shared::identifiers::Identifier) -> crate::partition::IdRef {
        crate::partition::IdRef {
            kind: i.kind,
            hash: ariane_shared::identifiers::identifier_hash(i.kind, &self.lookup_form(i.kind, &i.value)),
        }
    }

    pub fn survivorship(&self, trait_name: &str) -> Survivorship {
        self.traits.get(trait_name).copied().unwrap_or(self.default_survivorship)
    }

    /// Rank of a source channel for `source` survivorship (lower = more trusted).
    pub fn source_rank(&self, channel: &str) -> usize {
        self.source_rank.get(channel).copied().unwrap_or(usize::MAX / 2)
    }
}

fn kind_list() -> String {
    ALL_KINDS.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || !value[first.len()..].ends_with(last) || value.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::identifiers::Identifier;

    #[test]
    fn the_embedded_rules_are_valid() {
        let r = Rules::embedded().unwrap();
        assert_eq!(r.priority(IdentifierKind::CustomerId), 0);
        assert_eq!(r.role(IdentifierKind::CookieId), Some(Role::Attach));
        assert!(!r.usable(IdentifierKind::Email, "test@test.com"));
        assert!(!r.usable(IdentifierKind::Email, "Test@anything.fr"));
        assert!(!r.usable(IdentifierKind::Email, "a@example.com"));
        assert!(!r.usable(IdentifierKind::CookieId, "anonymous"));
        assert!(!r.usable(IdentifierKind::Phone, "+33000000000"));
        assert!(r.usable(IdentifierKind::Email, "marie@orange.fr"));
        assert_eq!(r.survivorship("city"), Survivorship::Source);
        assert!(r.source_rank("crm") < r.source_rank("web"));
    }

    #[test]
    fn the_email_fold_is_the_configured_one() {
        let all = Rules::embedded().unwrap();
        let fold = |r: &Rules, v: &str| r.lookup_form(IdentifierKind::Email, v).into_owned();
        assert_eq!(fold(&all, "hélène.müller@orange.fr"), "helene.muller@orange.fr", "accents fold, dots stay outside Gmail");
        assert_eq!(fold(&all, "marie.dupont+promo@gmail.com"), "mariedupont@gmail.com");
        assert_eq!(fold(&all, "marie.dupont@googlemail.com"), "mariedupont@googlemail.com");
        assert_eq!(fold(&all, "jean+x+y@free.fr"), "jean@free.fr");
        assert_eq!(fold(&all, "+jean@free.fr"), "+jean@free.fr", "a tag needs a name before it");
        assert_eq!(fold(&all, "a.b@mail.gmail.com.fr"), "a.b@mail.gmail.com.fr", "only Gmail's own domains");
        assert_eq!(fold(&all, "straße@x.de"), "straße@x.de", "ß has no decomposition");
        assert_eq!(fold(&all, "helene@orange.fr"), "helene@orange.fr");
        assert_eq!(fold(&all, "0612345678"), "0612345678", "a value without @ is left alone");
        assert_eq!(all.lookup_form(IdentifierKind::CookieId, "Ck.É+1").as_ref(), "Ck.É+1", "other kinds are not folded");
        let same = |r: &Rules, a: &str, b: &str| {
            r.id_ref(&Identifier::new(IdentifierKind::Email, a)) == r.id_ref(&Identifier::new(IdentifierKind::Email, b))
        };
        assert!(same(&all, "hélène+news@gmail.com", "h.e.l.e.n.e@gmail.com"));
        let only_tags =
            Rules::parse("t.toml", "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\nfold = [\"plus_tags\"]\n").unwrap();
        assert!(same(&only_tags, "marie+x@gmail.com", "marie@gmail.com"));
        assert!(!same(&only_tags, "ma.rie@gmail.com", "marie@gmail.com"));
        assert!(!same(&only_tags, "hélène@x.fr", "helene@x.fr"));
        let exact = Rules::parse("t.toml", "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\n").unwrap();
        assert!(!same(&exact, "marie+x@gmail.com", "marie@gmail.com"), "no fold: every written form is its own identifier");
        assert_eq!(
            exact.id_ref(&Identifier::new(IdentifierKind::Email, "marie@x.fr")).hash,
            Identifier::new(IdentifierKind::Email, "marie@x.fr").hash(),
            "without a fold the reference is the lake's hash"
        );
    }

    #[test]
    fn globs() {
        assert!(glob("test@*", "test@x.fr"));
        assert!(glob("*@example.com", "a@example.com"));
        assert!(!glob("*@example.com", "a@example.co"));
        assert!(glob("+33*00", "+3300"));
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("a*b*c", "axxbyyc"));
    }

    #[test]
    fn problems_name_the_file_and_the_place() {
        let bad = [
            ("[[types]]\nkind = \"mail\"\nrole = \"merge\"\nlimit = 1\n", "types[0]", "unknown identifier kind"),
            ("[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 0\n", "types[0]", "limit must be at least 1"),
            ("[[types]]\nkind = \"email\"\nrole = \"attach\"\nlimit = 1\n", "types", "role = \"merge\""),
            ("[[types]]\nkind = \"email\"\nrole = \"fuse\"\nlimit = 1\n", "toml", "unknown variant"),
            (
                "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\n[blocked]\nmail = [\"x\"]\n",
                "blocked.mail",
                "unknown identifier kind",
            ),
            (
                "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\n[blocked]\npatterns = [\"email:*\"]\n",
                "blocked.patterns",
                "every value",
            ),
            (
                "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\n[traits]\ncity = \"source\"\n",
                "traits.source_priority",
                "no source_priority",
            ),
            (
                "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\n[traits]\nsource_priority = [\"shop\"]\n",
                "traits.source_priority",
                "unknown channel",
            ),
            (
                "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\n[traits]\nshoe_size = \"latest\"\n",
                "traits.shoe_size",
                "unknown trait",
            ),
            (
                "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\nfold = [\"dots\"]\n",
                "types[0]",
                "unknown fold option \"dots\" (known: accents, plus_tags, provider_dots)",
            ),
            (
                "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\n[[types]]\nkind = \"phone\"\nrole = \"merge\"\nlimit = 1\nfold = [\"accents\"]\n",
                "types[1]",
                "fold applies to email only",
            ),
            (
                "[[types]]\nkind = \"email\"\nrole = \"merge\"\nlimit = 1\n[limits]\nmax_component_evidence = 2000\n",
                "limits.max_component_evidence",
                "400 KB",
            ),
        ];
        for (text, path, problem) in bad {
            let e = Rules::parse("config/x.toml", text).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(e.problem.contains(problem), "{e}");
            assert!(e.to_string().starts_with("config/x.toml: "), "{e}");
        }
    }
}
