//! Page URLs as the lake keeps them (one rule for ingest's specs and the collector).

/// A page URL as the lake keeps it: no fragment, no `user:password@`, and only the query
/// parameters the spec names (`keep_query`): the rest of a query string routinely carries
/// e-mails, names, session ids and reset tokens.
pub fn strip_url<S: AsRef<str>>(url: &str, keep: &[S]) -> String {
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // Userinfo sits between `scheme://` and the first `/` after it.
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    let kept: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            keep.iter().any(|k| k.as_ref() == name)
        })
        .collect();
    if kept.is_empty() {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}
