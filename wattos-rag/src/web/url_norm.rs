//! URL normalisation for dedupe: one spelling per page.

use url::Url;

/// Query parameters that only track campaigns; dropped so tagged links dedupe to one page.
const TRACKING: &[&str] = &["fbclid", "gclid", "mc_cid", "mc_eid", "ref_src"];

/// The normalised form of `url`: no fragment, tracking parameters (`utm_*`, `fbclid`, ...) removed,
/// remaining query pairs sorted, empty query dropped. The `url` crate already lowercases scheme and
/// host, removes default ports and resolves `.`/`..` segments.
///
/// ```
/// use url::Url;
/// use wattos_rag::web::normalize_url;
/// let a = normalize_url(&Url::parse("HTTP://Example.invalid:80/a/../b?z=1&utm_source=x&a=2#top").unwrap());
/// assert_eq!(a.as_str(), "http://example.invalid/b?a=2&z=1");
/// ```
pub fn normalize_url(url: &Url) -> Url {
    let mut u = url.clone();
    u.set_fragment(None);
    if u.query().is_some() {
        let mut pairs: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| !k.starts_with("utm_") && !TRACKING.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        if pairs.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_page_normalise_alike() {
        let n = |s: &str| normalize_url(&Url::parse(s).unwrap()).to_string();
        assert_eq!(n("http://h.invalid"), "http://h.invalid/");
        assert_eq!(n("http://h.invalid/a#x"), n("http://H.invalid/a"));
        assert_eq!(n("http://h.invalid/a?utm_medium=m"), "http://h.invalid/a");
        assert_eq!(
            n("http://h.invalid/a?b=2&a=1"),
            n("http://h.invalid/a?a=1&b=2")
        );
        assert_ne!(n("http://h.invalid/a?p=1"), n("http://h.invalid/a?p=2"));
    }
}
