//! HTML to Markdown-style text: headings become `#` lines, blocks become paragraphs, scripts and
//! styles are dropped; optionally links become Markdown links with absolute URLs.

use async_trait::async_trait;
use scraper::{ElementRef, Html, Node};
use url::Url;
use wattos_core::{RequestContext, Result};

use super::{DEFAULT_MAX_BYTES, Loader, decode_text, document, non_empty};
use crate::document::{Document, Format, Source};

/// Loads HTML as text with `#` headings, so the structure-aware chunker sees sections.
#[derive(Debug, Clone)]
pub struct HtmlLoader {
    max_bytes: usize,
    links: bool,
}

impl HtmlLoader {
    /// A loader accepting up to `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            links: false,
        }
    }

    /// Keeps `<a href>` links as Markdown links `[text](url)`. Relative links are resolved against
    /// the source's `location` (or `<base href>`); links that cannot be made absolute `http(s)` URLs
    /// (`javascript:`, `mailto:`, fragments) keep only their text.
    #[must_use]
    pub fn with_links(mut self, keep: bool) -> Self {
        self.links = keep;
        self
    }
}

impl Default for HtmlLoader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

#[async_trait]
impl Loader for HtmlLoader {
    async fn load(&self, _ctx: &RequestContext, source: Source) -> Result<Document> {
        let raw = decode_text(&source, self.max_bytes)?;
        let (text, title) = if self.links {
            let base = source.location.as_deref().and_then(|l| Url::parse(l).ok());
            html_to_text_with(&raw, Some(base.as_ref()))
        } else {
            html_to_text(&raw)
        };
        let text = non_empty(&source.id, text)?;
        Ok(document(source, Format::Html, text, title))
    }
}

/// Converts HTML to text; returns the text and the `<title>` (or first `<h1>`).
pub(crate) fn html_to_text(raw: &str) -> (String, Option<String>) {
    html_to_text_with(raw, None)
}

/// Links mode: `Some(base)` keeps links, resolved against `<base href>` or `base`.
pub(crate) fn html_to_text_with(
    raw: &str,
    links: Option<Option<&Url>>,
) -> (String, Option<String>) {
    let html = Html::parse_document(raw);
    let mut out = String::new();
    let mut title = None;
    let base = links.map(|b| document_base(&html, b));
    let w = Walker {
        links: links.is_some(),
        base: base.flatten(),
    };
    w.walk(html.root_element(), &mut out, &mut title);
    // Collapse runs of blank lines.
    let mut cleaned = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank == 1 && !cleaned.is_empty() {
                cleaned.push('\n');
            }
        } else {
            blank = 0;
            cleaned.push_str(line.trim_start());
            cleaned.push('\n');
        }
    }
    (cleaned.trim().to_owned(), title)
}

/// The `<base href>` of a page resolved against `base`, else `base`.
pub(crate) fn document_base(html: &Html, base: Option<&Url>) -> Option<Url> {
    let sel = scraper::Selector::parse("base[href]").ok()?;
    let href = html
        .select(&sel)
        .next()
        .and_then(|e| e.value().attr("href"));
    match (href, base) {
        (Some(h), Some(b)) => b.join(h).ok().or_else(|| Some(b.clone())),
        (Some(h), None) => Url::parse(h).ok(),
        (None, b) => b.cloned(),
    }
}

/// Resolves `href` to an absolute `http(s)` URL without fragment.
pub(crate) fn resolve_link(base: Option<&Url>, href: &str) -> Option<Url> {
    let href = href.trim();
    if href.is_empty() || href.starts_with('#') {
        return None;
    }
    let mut u = match base {
        Some(b) => b.join(href).ok()?,
        None => Url::parse(href).ok()?,
    };
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    u.set_fragment(None);
    Some(u)
}

struct Walker {
    links: bool,
    base: Option<Url>,
}

impl Walker {
    fn walk(&self, el: ElementRef<'_>, out: &mut String, title: &mut Option<String>) {
        let name = el.value().name();
        match name {
            "script" | "style" | "noscript" | "template" | "svg" | "iframe" => return,
            "title" => {
                let t = collapse(&el.text().collect::<String>());
                if !t.is_empty() {
                    *title = Some(t);
                }
                return;
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let level = usize::from(name.as_bytes()[1] - b'0');
                let t = collapse(&el.text().collect::<String>());
                if !t.is_empty() {
                    if level == 1 && title.is_none() {
                        *title = Some(t.clone());
                    }
                    out.push_str("\n\n");
                    out.push_str(&"#".repeat(level));
                    out.push(' ');
                    out.push_str(&t);
                    out.push_str("\n\n");
                }
                return;
            }
            "br" => {
                out.push('\n');
                return;
            }
            "a" if self.links => {
                let target = el
                    .value()
                    .attr("href")
                    .and_then(|h| resolve_link(self.base.as_ref(), h));
                let t = collapse(&el.text().collect::<String>());
                match target {
                    Some(u) if !t.is_empty() => {
                        out.push_str(&format!(" [{t}]({u}) "));
                        return;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        let block = matches!(
            name,
            "p" | "div"
                | "section"
                | "article"
                | "header"
                | "footer"
                | "main"
                | "nav"
                | "aside"
                | "ul"
                | "ol"
                | "table"
                | "tr"
                | "blockquote"
                | "pre"
                | "figure"
                | "dl"
                | "body"
        );
        if block {
            out.push_str("\n\n");
        }
        if name == "li" {
            out.push_str("\n- ");
        }
        if matches!(name, "td" | "th") {
            out.push_str(" | ");
        }
        for child in el.children() {
            match child.value() {
                Node::Text(t) => {
                    let s = collapse_keep_edges(t);
                    out.push_str(&s);
                }
                Node::Element(_) => {
                    if let Some(c) = ElementRef::wrap(child) {
                        self.walk(c, out, title);
                    }
                }
                _ => {}
            }
        }
        if block {
            out.push_str("\n\n");
        }
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn collapse_keep_edges(s: &str) -> String {
    let inner = collapse(s);
    if inner.is_empty() {
        return if s.is_empty() {
            String::new()
        } else {
            " ".into()
        };
    }
    let lead = if s.starts_with(char::is_whitespace) {
        " "
    } else {
        ""
    };
    let trail = if s.ends_with(char::is_whitespace) {
        " "
    } else {
        ""
    };
    format!("{lead}{inner}{trail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_headings_drops_scripts() {
        let (text, title) = html_to_text(
            "<html><head><title>Guide</title><style>p{}</style></head><body>\
             <h1>Intro</h1><p>Hello <b>bold</b>\n world.</p><script>alert(1)</script>\
             <h2>Setup</h2><ul><li>one</li><li>two</li></ul></body></html>",
        );
        assert_eq!(title.as_deref(), Some("Guide"));
        assert!(text.starts_with("# Intro\n\nHello bold world."), "{text}");
        assert!(text.contains("## Setup"));
        assert!(text.contains("- one"));
        assert!(!text.contains("alert"));
        assert!(!text.contains("p{}"));
    }

    #[tokio::test]
    async fn keeps_links_as_absolute_markdown_links() {
        let ctx = RequestContext::system(wattos_core::TenantId::new("t").unwrap());
        let src = Source::new(
            "page",
            "<html><body><h1>Docs</h1><p>See <a href=\"guide/setup.html#x\">the setup guide</a>, \
             <a href=\"mailto:a@b.c\">mail us</a> or <a href=\"#top\">top</a>.</p></body></html>",
        )
        .with_location("https://example.invalid/docs/index.html");
        let plain = HtmlLoader::default().load(&ctx, src.clone()).await.unwrap();
        assert!(plain.text.contains("See the setup guide"), "{}", plain.text);
        let linked = HtmlLoader::default()
            .with_links(true)
            .load(&ctx, src)
            .await
            .unwrap();
        assert!(
            linked
                .text
                .contains("[the setup guide](https://example.invalid/docs/guide/setup.html)"),
            "{}",
            linked.text
        );
        assert!(linked.text.contains("mail us"));
        assert!(!linked.text.contains("mailto"));
        assert!(linked.text.starts_with("# Docs"));
    }
}
