#!/usr/bin/env python3
"""Builds the `rust-errors` BEIR-layout retrieval set from the local Rust toolchain.

Corpus: the rustc error index as installed by rustup's `rust-docs` component
(`<sysroot>/share/doc/rust/html/error_codes/E*.html`), one document per error code, the page
converted to plain text (headings, paragraphs, code examples without rustdoc's hidden lines).

Queries: what the compiler itself prints. Every `compile_fail,EXXXX` example of the index is
compiled with the toolchain's rustc (`--error-format=json`); the message of the first diagnostic
carrying code EXXXX becomes the query (without the code), judged relevant (grade 2) to EXXXX's
page. So no query is written by hand: they are the messages a developer pastes into a search box.
Examples whose compilation does not produce their code (feature-gated, platform-specific, no
longer emitted) yield no query; their pages stay in the corpus as distractors. Identical messages
of different codes are kept once, judged for every code that produced them.

Usage: scripts/make-rust-errors-dataset.py [OUT_DIR] (default wattos-rag/data/rust-errors).
Needs rustup's `rust-docs` component and `rustc` on PATH; takes a few minutes (one rustc call per
example). Text and messages come from the Rust project (MIT OR Apache-2.0).
"""

import html
import html.parser
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor


def sysroot():
    return subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()


class PageParser(html.parser.HTMLParser):
    """Collects the text of `<main>` and its code blocks (with and without hidden lines)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.in_main = False
        self.depth_boring = 0
        self.in_pre = False
        self.code_classes = ""
        self.blocks = []  # (classes, full source, shown source)
        self.full = []
        self.shown = []
        self.parts = []  # text parts of the page
        self.line = []

    def flush(self):
        text = "".join(self.line).strip()
        if text:
            self.parts.append(re.sub(r"[ \t]+", " ", text))
        self.line = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "main":
            self.in_main = True
        if not self.in_main:
            return
        if tag == "pre":
            self.flush()
            self.in_pre = True
            self.full, self.shown = [], []
            self.code_classes = ""
        elif tag == "code" and self.in_pre:
            self.code_classes = a.get("class", "") or ""
        elif tag == "span" and "boring" in (a.get("class") or "").split():
            self.depth_boring += 1
        elif self.depth_boring and tag == "span":
            self.depth_boring += 1
        elif tag in ("p", "li", "h1", "h2", "h3", "h4", "br", "div", "blockquote"):
            self.flush()
        elif tag == "code" and not self.in_pre:
            self.line.append("`")

    def handle_endtag(self, tag):
        if tag == "main":
            self.flush()
            self.in_main = False
        if not self.in_main:
            return
        if tag == "pre" and self.in_pre:
            self.in_pre = False
            shown = "".join(self.shown).strip("\n")
            self.blocks.append((self.code_classes, "".join(self.full), shown))
            if shown:
                self.parts.append(shown)
        elif tag == "span" and self.depth_boring:
            self.depth_boring -= 1
        elif tag in ("p", "li", "h1", "h2", "h3", "h4", "div", "blockquote"):
            self.flush()
        elif tag == "code" and not self.in_pre:
            self.line.append("`")

    def handle_data(self, data):
        if not self.in_main:
            return
        if self.in_pre:
            self.full.append(data)
            if not self.depth_boring:
                self.shown.append(data)
        else:
            self.line.append(data.replace("\n", " "))


def parse_page(path):
    p = PageParser()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    return p


def compile_example(source, code, classes):
    """The message of the first diagnostic with `code`, or None."""
    editions = [e for e in ("2015", "2018", "2021", "2024") if f"edition{e}" in classes]
    editions = editions or ["2021", "2015"]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "example.rs")
        with open(src, "w", encoding="utf-8") as f:
            f.write(source)
        for edition in editions:
            for crate_type in ("bin", "lib"):
                try:
                    out = subprocess.run(
                        ["rustc", "--edition", edition, "--crate-type", crate_type,
                         "--error-format=json", "--emit=metadata", "--out-dir", tmp, src],
                        capture_output=True, text=True, timeout=120,
                    )
                except subprocess.TimeoutExpired:
                    return None
                for line in out.stderr.splitlines():
                    try:
                        d = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if (d.get("code") or {}).get("code") == code:
                        return d["message"].strip()
    return None


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "wattos-rag", "data", "rust-errors")
    index = os.path.join(sysroot(), "share", "doc", "rust", "html", "error_codes")
    pages = sorted(f for f in os.listdir(index) if re.fullmatch(r"E\d{4}\.html", f))
    corpus, jobs = [], []
    for name in pages:
        code = name[:-5]
        page = parse_page(os.path.join(index, name))
        parts = page.parts
        title = parts[0] if parts and parts[0].startswith("Error code") else f"Error code {code}"
        body = "\n\n".join(p for p in parts if p != title)
        corpus.append({"_id": code, "title": title, "text": body})
        for classes, full, _ in page.blocks:
            words = classes.replace(",", " ").split()
            if "compile_fail" in words and code in words:
                jobs.append((code, html.unescape(full), classes))
    print(f"{len(corpus)} pages, {len(jobs)} compile_fail examples", file=sys.stderr)

    def run(job):
        code, source, classes = job
        return code, compile_example(source, code, classes)

    messages = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for code, msg in pool.map(run, jobs):
            if msg and code not in messages:
                messages[code] = msg
    by_text = {}
    for code in sorted(messages):
        by_text.setdefault(messages[code], []).append(code)
    os.makedirs(os.path.join(out_dir, "qrels"), exist_ok=True)
    with open(os.path.join(out_dir, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for doc in corpus:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "queries.jsonl"), "w", encoding="utf-8") as q, open(
        os.path.join(out_dir, "qrels", "test.tsv"), "w", encoding="utf-8"
    ) as r:
        r.write("query-id\tcorpus-id\tscore\n")
        for text, codes in sorted(by_text.items(), key=lambda kv: kv[1][0]):
            qid = f"q{codes[0]}"
            q.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
            for code in codes:
                r.write(f"{qid}\t{code}\t2\n")
    print(f"{len(by_text)} queries for {len(messages)} codes written to {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
