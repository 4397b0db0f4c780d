//! A byte-level JSON grammar compiled from a JSON Schema, for constrained decoding.
//!
//! [`Grammar::from_schema`] compiles the subset of JSON Schema that tool parameters and structured
//! outputs use: `type` (object, array, string, number, integer, boolean, null, and lists of types),
//! `properties` + `required`, `items` + `minItems`/`maxItems`, `minLength`/`maxLength`, `enum`,
//! `const`, a non-negative `minimum`, `anyOf`/`oneOf` whose branches start differently, and local
//! `$ref`s (`#/$defs/…`, `#/definitions/…`). Other keywords are ignored; a part of a schema that
//! cannot be compiled (ambiguous unions, more than 64 properties or enum values, deep recursion)
//! accepts any JSON value there. Objects accept only the listed properties, each at most once, in any
//! order, and close only once every required property is present.
//!
//! [`Matcher`] walks the grammar one byte at a time. It accepts exactly the prefixes of documents the
//! grammar allows, and every accepted prefix can still be completed, so a decoder that only ever
//! picks tokens the matcher accepts cannot paint itself into a corner. Whitespace is limited to one
//! space or newline between tokens, so a model cannot stall in an endless run of blanks.

use serde_json::Value;
use wattos_core::llm::ToolDefinition;

/// Index of a node in [`Grammar::nodes`].
type NodeId = usize;

/// Nested `$ref` expansions before a schema part is compiled as "any value".
const MAX_REF_DEPTH: usize = 8;
/// Frames on the matcher stack before containers of "any value" are refused.
const MAX_STACK: usize = 32;
/// Digits of an integer (fits an `i64`).
const MAX_INT_DIGITS: u8 = 18;
/// Significant digits of a number, and digits of its exponent.
const MAX_NUM_DIGITS: u8 = 24;
const MAX_EXP_DIGITS: u8 = 2;
/// Consecutive whitespace bytes allowed.
const MAX_WS_RUN: u8 = 1;
/// Tool calls in one `<tool_call>` block.
const MAX_CALLS: u32 = 8;

/// A grammar node.
#[derive(Debug, Clone)]
enum Node {
    /// Any JSON value (a union of the generic kinds).
    Any,
    /// An object with these properties (JSON-encoded keys, quotes included) and required bitmask.
    Object {
        props: Vec<(Vec<u8>, NodeId)>,
        required: u64,
    },
    /// An object with any keys and values.
    AnyObject,
    Array {
        items: NodeId,
        min: u32,
        max: u32,
    },
    String {
        min: u32,
        max: u32,
    },
    Number {
        integer: bool,
        nonneg: bool,
    },
    /// One of these exact JSON encodings (enum, const, booleans, null).
    Literals(Vec<Vec<u8>>),
    /// Branches with disjoint first bytes.
    Union(Vec<NodeId>),
    /// `{"name": <one of the names>, "arguments": <that tool's arguments>}`.
    ToolCall(Vec<(Vec<u8>, NodeId)>),
}

/// A compiled grammar: one root value, then a fixed suffix.
#[derive(Debug, Clone)]
pub(crate) struct Grammar {
    nodes: Vec<Node>,
    root: NodeId,
    suffix: Vec<u8>,
}

/// Schema compiler state.
struct Compiler<'a> {
    doc: &'a Value,
    nodes: Vec<Node>,
    any: NodeId,
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec())
}

fn encoded_str(s: &str) -> Vec<u8> {
    json_bytes(&Value::String(s.to_owned()))
}

impl<'a> Compiler<'a> {
    fn new(doc: &'a Value) -> Self {
        let mut c = Self {
            doc,
            nodes: Vec::new(),
            any: 0,
        };
        c.any = c.add(Node::Any);
        c
    }

    fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Compiles `schema`; parts that cannot be compiled become "any value".
    fn compile(&mut self, schema: &Value, depth: usize) -> NodeId {
        self.try_compile(schema, depth).unwrap_or(self.any)
    }

    fn try_compile(&mut self, schema: &Value, depth: usize) -> Option<NodeId> {
        let map = match schema {
            Value::Bool(true) => return Some(self.any),
            Value::Object(map) => map,
            _ => return None,
        };
        if let Some(Value::String(r)) = map.get("$ref") {
            if depth >= MAX_REF_DEPTH {
                return None;
            }
            let target = r.strip_prefix('#').and_then(|p| self.doc.pointer(p))?;
            return self.try_compile(target, depth + 1);
        }
        if let Some(c) = map.get("const") {
            return Some(self.add(Node::Literals(vec![json_bytes(c)])));
        }
        if let Some(Value::Array(values)) = map.get("enum") {
            if values.is_empty() || values.len() > 64 {
                return None;
            }
            return Some(self.add(Node::Literals(values.iter().map(json_bytes).collect())));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = map.get(key) {
                let ids: Vec<NodeId> = branches.iter().map(|b| self.compile(b, depth)).collect();
                return self.union(ids);
            }
        }
        if let Some(Value::Array(parts)) = map.get("allOf")
            && let [only] = parts.as_slice()
        {
            return self.try_compile(only, depth);
        }
        match map.get("type") {
            Some(Value::String(t)) => self.typed(t, map, depth),
            Some(Value::Array(types)) => {
                let mut ids = Vec::new();
                for t in types {
                    ids.push(self.typed(t.as_str()?, map, depth)?);
                }
                self.union(ids)
            }
            None if map.contains_key("properties") => self.typed("object", map, depth),
            None if map.contains_key("items") => self.typed("array", map, depth),
            _ => Some(self.any),
        }
    }

    fn typed(
        &mut self,
        t: &str,
        map: &serde_json::Map<String, Value>,
        depth: usize,
    ) -> Option<NodeId> {
        let uint = |k: &str| {
            map.get(k)
                .and_then(Value::as_u64)
                .map(|n| n.min(u64::from(u32::MAX)) as u32)
        };
        let nonneg = ["minimum", "exclusiveMinimum"].iter().any(|k| {
            map.get(*k)
                .and_then(Value::as_f64)
                .is_some_and(|m| m >= 0.0)
        });
        let node = match t {
            "string" => Node::String {
                min: uint("minLength").unwrap_or(0),
                max: uint("maxLength").unwrap_or(u32::MAX),
            },
            "integer" => Node::Number {
                integer: true,
                nonneg,
            },
            "number" => Node::Number {
                integer: false,
                nonneg,
            },
            "boolean" => Node::Literals(vec![b"true".to_vec(), b"false".to_vec()]),
            "null" => Node::Literals(vec![b"null".to_vec()]),
            "array" => {
                let items = match map.get("items") {
                    Some(s @ (Value::Object(_) | Value::Bool(true))) => self.compile(s, depth),
                    _ => self.any,
                };
                let min = uint("minItems").unwrap_or(0);
                let max = uint("maxItems").unwrap_or(u32::MAX);
                if min > max {
                    return None;
                }
                Node::Array { items, min, max }
            }
            "object" => match map.get("properties") {
                Some(Value::Object(props)) if props.len() <= 64 => {
                    let required: Vec<&str> = map
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let mut compiled = Vec::with_capacity(props.len());
                    let mut mask = 0u64;
                    for (i, (key, schema)) in props.iter().enumerate() {
                        if required.contains(&key.as_str()) {
                            mask |= 1 << i;
                        }
                        compiled.push((encoded_str(key), self.compile(schema, depth)));
                    }
                    if required.iter().any(|r| !props.contains_key(*r)) {
                        // A required property that is not described: any object keeps it possible.
                        return Some(self.add(Node::AnyObject));
                    }
                    Node::Object {
                        props: compiled,
                        required: mask,
                    }
                }
                Some(_) => Node::AnyObject,
                None if map.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    Node::Object {
                        props: Vec::new(),
                        required: 0,
                    }
                }
                None => Node::AnyObject,
            },
            _ => return None,
        };
        Some(self.add(node))
    }

    /// A union, if its branches can be told apart by their first byte.
    fn union(&mut self, ids: Vec<NodeId>) -> Option<NodeId> {
        if ids.is_empty() {
            return None;
        }
        if ids.len() == 1 {
            return Some(ids[0]);
        }
        let mut seen = [false; 256];
        for &id in &ids {
            for (s, f) in seen.iter_mut().zip(first_bytes(&self.nodes, id)) {
                if f && *s {
                    return None;
                }
                *s |= f;
            }
        }
        Some(self.add(Node::Union(ids)))
    }
}

/// The bytes a value of `id` can start with.
fn first_bytes(nodes: &[Node], id: NodeId) -> [bool; 256] {
    let mut out = [false; 256];
    let mut set = |bs: &[u8]| bs.iter().for_each(|b| out[*b as usize] = true);
    match &nodes[id] {
        Node::Any => set(b"\"-0123456789tfn{["),
        Node::Object { .. } | Node::AnyObject | Node::ToolCall(_) => set(b"{"),
        Node::Array { .. } => set(b"["),
        Node::String { .. } => set(b"\""),
        Node::Number { nonneg: true, .. } => set(b"0123456789"),
        Node::Number { .. } => set(b"-0123456789"),
        Node::Literals(lits) => {
            for l in lits {
                set(&l[..1.min(l.len())]);
            }
        }
        Node::Union(ids) => {
            for &b in ids {
                let f = first_bytes(nodes, b);
                for (o, x) in out.iter_mut().zip(f) {
                    *o |= x;
                }
            }
        }
    }
    out
}

impl Grammar {
    /// A grammar for one JSON document matching `schema`.
    pub(crate) fn from_schema(schema: &Value) -> Self {
        let mut c = Compiler::new(schema);
        let root = c.compile(schema, 0);
        Self {
            nodes: c.nodes,
            root,
            suffix: Vec::new(),
        }
    }

    /// A grammar for the body of a tool-call block, after `<tool_call>`:
    /// `[{"name": "<tool>", "arguments": {…}}, …]</tool_call>`, each call's arguments matching its
    /// tool's parameter schema.
    pub(crate) fn tool_calls(tools: &[ToolDefinition], close: &str) -> Self {
        let mut nodes = Vec::new();
        let mut names = Vec::with_capacity(tools.len());
        for tool in tools {
            let mut c = Compiler::new(&tool.parameters);
            // Each tool's arena is appended whole; offsets keep its references apart.
            let offset = nodes.len();
            let root = c.compile(&tool.parameters, 0);
            for node in c.nodes {
                nodes.push(shift(node, offset));
            }
            names.push((encoded_str(&tool.name), root + offset));
        }
        nodes.push(Node::ToolCall(names));
        let call = nodes.len() - 1;
        nodes.push(Node::Array {
            items: call,
            min: 1,
            max: MAX_CALLS,
        });
        let root = nodes.len() - 1;
        Self {
            nodes,
            root,
            suffix: close.as_bytes().to_vec(),
        }
    }

    /// A matcher at the start of the grammar.
    pub(crate) fn matcher(&self) -> Matcher<'_> {
        Matcher {
            g: self,
            stack: Vec::with_capacity(8),
            top: Top::Root,
            ws_run: 0,
        }
    }
}

/// Moves a node's references by `offset` (when concatenating node arenas).
fn shift(node: Node, offset: usize) -> Node {
    match node {
        Node::Object { props, required } => Node::Object {
            props: props.into_iter().map(|(k, id)| (k, id + offset)).collect(),
            required,
        },
        Node::Array { items, min, max } => Node::Array {
            items: items + offset,
            min,
            max,
        },
        Node::Union(ids) => Node::Union(ids.into_iter().map(|id| id + offset).collect()),
        Node::ToolCall(names) => {
            Node::ToolCall(names.into_iter().map(|(n, id)| (n, id + offset)).collect())
        }
        // `Any` refers to its own arena's generic kinds, built on the fly.
        other => other,
    }
}

/// Where the matcher is outside the root value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    /// Before or inside the root value.
    Root,
    /// After the root value, this many suffix bytes matched.
    Suffix(usize),
    /// The grammar is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    /// Hex digits still expected in a `\uXXXX` escape.
    Hex(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumSt {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjSt {
    Open,
    Key { cands: u64, pos: usize },
    AfterKey(usize),
    Colon(usize),
    Value,
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnyObjSt {
    Open,
    /// A key string is on the stack above.
    Key,
    AfterKey,
    Colon,
    Value,
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrSt {
    Open,
    Value,
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallSt {
    Open,
    NameKey(usize),
    AfterNameKey,
    NameColon,
    Name { cands: u64, pos: usize },
    AfterName(usize),
    Comma(usize),
    ArgsKey(usize, usize),
    AfterArgsKey(usize),
    ArgsColon(usize),
    AfterArgs,
}

const NAME_KEY: &[u8] = b"\"name\"";
const ARGS_KEY: &[u8] = b"\"arguments\"";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Object {
        node: NodeId,
        seen: u64,
        st: ObjSt,
    },
    AnyObject {
        any: NodeId,
        st: AnyObjSt,
    },
    Array {
        node: NodeId,
        count: u32,
        st: ArrSt,
    },
    String {
        max: u32,
        min: u32,
        len: u32,
        utf8: u8,
        esc: Esc,
    },
    Number {
        integer: bool,
        st: NumSt,
        digits: u8,
    },
    Literals {
        node: NodeId,
        cands: u64,
        pos: usize,
    },
    ToolCall {
        node: NodeId,
        st: CallSt,
    },
}

/// What a frame did with a byte.
enum Step {
    Consumed,
    Rejected,
    /// The frame's value was already complete: pop it and offer the byte to the parent.
    Finished,
}

/// Walks a [`Grammar`] byte by byte. After a rejected byte the matcher is in an unspecified state:
/// test bytes on a clone ([`Matcher::accepts`]) and only advance with accepted ones.
#[derive(Debug, Clone)]
pub(crate) struct Matcher<'g> {
    g: &'g Grammar,
    stack: Vec<Frame>,
    top: Top,
    ws_run: u8,
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\n'
}

/// Candidates among `lits` (bitmask) whose byte at `pos` is `b`.
fn filter(lits: &[Vec<u8>], cands: u64, pos: usize, b: u8) -> u64 {
    let mut out = 0;
    for (i, l) in lits.iter().enumerate() {
        if cands & (1 << i) != 0 && l.get(pos) == Some(&b) {
            out |= 1 << i;
        }
    }
    out
}

/// A candidate of `cands` that is exactly `len` bytes long.
fn complete(lits: &[Vec<u8>], cands: u64, len: usize) -> Option<usize> {
    (0..lits.len()).find(|&i| cands & (1 << i) != 0 && lits[i].len() == len)
}

fn all_mask(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

impl<'g> Matcher<'g> {
    /// Whether the grammar is complete (nothing more may follow).
    pub(crate) fn is_done(&self) -> bool {
        self.top == Top::Done
    }

    /// Whether the output may end here (complete, or a complete root number/literal with no suffix).
    pub(crate) fn can_end(&self) -> bool {
        match self.top {
            Top::Done => true,
            Top::Suffix(_) => false,
            Top::Root => {
                self.g.suffix.is_empty()
                    && self.stack.len() == 1
                    && self.stack.last().is_some_and(|f| self.frame_complete(f))
            }
        }
    }

    /// Whether all of `bytes` would be accepted from here (the matcher is unchanged).
    pub(crate) fn accepts(&self, bytes: &[u8]) -> bool {
        let mut m = self.clone();
        m.push_all(bytes)
    }

    /// Advances over `bytes`; `false` if one is rejected.
    pub(crate) fn push_all(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|b| self.push(*b))
    }

    /// Advances over one byte; `false` if the grammar does not allow it here.
    pub(crate) fn push(&mut self, b: u8) -> bool {
        let ws = is_ws(b);
        let ok = self.step(b);
        if ok {
            self.ws_run = if ws { self.ws_run + 1 } else { 0 };
        }
        ok
    }

    fn ws_ok(&self, b: u8) -> bool {
        is_ws(b) && self.ws_run < MAX_WS_RUN
    }

    fn step(&mut self, b: u8) -> bool {
        loop {
            let Some(frame) = self.stack.last().copied() else {
                return self.step_top(b);
            };
            match self.step_frame(frame, b) {
                Step::Consumed => return true,
                Step::Rejected => return false,
                Step::Finished => {
                    self.stack.pop();
                    self.value_done();
                }
            }
        }
    }

    fn step_top(&mut self, b: u8) -> bool {
        match self.top {
            Top::Root => {
                if self.ws_ok(b) {
                    return true;
                }
                self.start_value(self.g.root, b)
            }
            Top::Suffix(pos) => {
                if pos == 0 && self.ws_ok(b) {
                    return true;
                }
                if self.g.suffix.get(pos) == Some(&b) {
                    self.top = if pos + 1 == self.g.suffix.len() {
                        Top::Done
                    } else {
                        Top::Suffix(pos + 1)
                    };
                    true
                } else {
                    false
                }
            }
            Top::Done => false,
        }
    }

    /// A child value was popped; update the parent (or the top level).
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            None => {
                self.top = if self.g.suffix.is_empty() {
                    Top::Done
                } else {
                    Top::Suffix(0)
                };
            }
            Some(Frame::AnyObject { st, .. }) if *st == AnyObjSt::Key => *st = AnyObjSt::AfterKey,
            // Other parents moved to their after-value state when the child started.
            Some(_) => {}
        }
    }

    fn set_top(&mut self, frame: Frame) {
        if let Some(f) = self.stack.last_mut() {
            *f = frame;
        }
    }

    /// Starts a value of `node` with its first byte `b`.
    fn start_value(&mut self, node: NodeId, b: u8) -> bool {
        let g = self.g;
        let frame = match &g.nodes[node] {
            Node::Any => return self.start_any(node, b),
            Node::Union(ids) => {
                let Some(&branch) = ids
                    .iter()
                    .find(|&&id| first_bytes(&g.nodes, id)[b as usize])
                else {
                    return false;
                };
                return self.start_value(branch, b);
            }
            Node::Object { .. } if b == b'{' => Frame::Object {
                node,
                seen: 0,
                st: ObjSt::Open,
            },
            Node::AnyObject if b == b'{' => {
                if self.stack.len() >= MAX_STACK {
                    return false;
                }
                Frame::AnyObject {
                    any: self.any_of(node),
                    st: AnyObjSt::Open,
                }
            }
            Node::ToolCall(_) if b == b'{' => Frame::ToolCall {
                node,
                st: CallSt::Open,
            },
            Node::Array { .. } if b == b'[' => {
                if self.stack.len() >= MAX_STACK {
                    return false;
                }
                Frame::Array {
                    node,
                    count: 0,
                    st: ArrSt::Open,
                }
            }
            Node::String { min, max } if b == b'"' => Frame::String {
                max: *max,
                min: *min,
                len: 0,
                utf8: 0,
                esc: Esc::None,
            },
            Node::Number { integer, nonneg } => {
                let st = match b {
                    b'-' if !nonneg => NumSt::Minus,
                    b'0' => NumSt::Zero,
                    b'1'..=b'9' => NumSt::Int,
                    _ => return false,
                };
                Frame::Number {
                    integer: *integer,
                    st,
                    digits: u8::from(st != NumSt::Minus),
                }
            }
            Node::Literals(lits) => {
                let cands = filter(lits, all_mask(lits.len()), 0, b);
                if cands == 0 {
                    return false;
                }
                Frame::Literals {
                    node,
                    cands,
                    pos: 1,
                }
            }
            _ => return false,
        };
        self.stack.push(frame);
        true
    }

    /// The `Any` node that values inside a generic container use: `node` itself when it is `Any`,
    /// otherwise the grammar's first `Any` (every compiled arena starts with one).
    fn any_of(&self, node: NodeId) -> NodeId {
        if matches!(self.g.nodes[node], Node::Any) {
            return node;
        }
        (0..=node)
            .rev()
            .find(|&i| matches!(self.g.nodes[i], Node::Any))
            .unwrap_or(0)
    }

    /// Starts a generic value (`any` is an `Any` node id).
    fn start_any(&mut self, any: NodeId, b: u8) -> bool {
        let frame = match b {
            b'{' | b'[' if self.stack.len() >= MAX_STACK => return false,
            b'{' => Frame::AnyObject {
                any,
                st: AnyObjSt::Open,
            },
            b'[' => Frame::Array {
                node: any,
                count: 0,
                st: ArrSt::Open,
            },
            b'"' => Frame::String {
                max: u32::MAX,
                min: 0,
                len: 0,
                utf8: 0,
                esc: Esc::None,
            },
            b'-' => Frame::Number {
                integer: false,
                st: NumSt::Minus,
                digits: 0,
            },
            b'0' => Frame::Number {
                integer: false,
                st: NumSt::Zero,
                digits: 1,
            },
            b'1'..=b'9' => Frame::Number {
                integer: false,
                st: NumSt::Int,
                digits: 1,
            },
            b't' | b'f' | b'n' => {
                // Literal frames need a node; use the positions of true/false/null below.
                return self.start_keyword(b);
            }
            _ => return false,
        };
        self.stack.push(frame);
        true
    }

    fn start_keyword(&mut self, b: u8) -> bool {
        // `true`, `false`, `null` as a string frame would be wrong; match them with a tiny literal
        // table kept in the Number-free Literals form: encode as a frame over a static list.
        let idx = match b {
            b't' => 0,
            b'f' => 1,
            _ => 2,
        };
        self.stack.push(Frame::Literals {
            node: KEYWORDS_NODE,
            cands: 1 << idx,
            pos: 1,
        });
        true
    }

    fn literals(&self, node: NodeId) -> &'g [Vec<u8>] {
        if node == KEYWORDS_NODE {
            return keywords();
        }
        let g = self.g;
        match &g.nodes[node] {
            Node::Literals(l) => l,
            _ => &[],
        }
    }

    fn frame_complete(&self, f: &Frame) -> bool {
        match *f {
            Frame::Number { st, .. } => {
                matches!(st, NumSt::Zero | NumSt::Int | NumSt::Frac | NumSt::Exp)
            }
            Frame::Literals { node, cands, pos } => {
                complete(self.literals(node), cands, pos).is_some()
            }
            _ => false,
        }
    }

    fn step_frame(&mut self, frame: Frame, b: u8) -> Step {
        let g = self.g;
        let ok = |v: bool| if v { Step::Consumed } else { Step::Rejected };
        match frame {
            Frame::String {
                max,
                min,
                len,
                utf8,
                esc,
            } => {
                // utf8: continuation bytes still expected; (lo, hi): the next one's range.
                let (lo, hi) = next_range(utf8);
                let mut f = (len, utf8, esc);
                match esc {
                    Esc::Backslash => match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            f = (len + 1, 0, Esc::None)
                        }
                        b'u' => f.2 = Esc::Hex(4),
                        _ => return Step::Rejected,
                    },
                    Esc::Hex(n) => {
                        // No surrogate escapes (a lone one is invalid JSON text for serde).
                        let first = n == 4;
                        if !b.is_ascii_hexdigit() || (first && matches!(b, b'd' | b'D')) {
                            return Step::Rejected;
                        }
                        f = if n == 1 {
                            (len + 1, 0, Esc::None)
                        } else {
                            (len, 0, Esc::Hex(n - 1))
                        };
                    }
                    Esc::None if utf8 != 0 => {
                        if b < lo || b > hi {
                            return Step::Rejected;
                        }
                        f.1 = utf8_after(utf8);
                    }
                    Esc::None => match b {
                        b'"' if len >= min => {
                            self.stack.pop();
                            self.value_done();
                            return Step::Consumed;
                        }
                        _ if len >= max => return Step::Rejected,
                        b'\\' => f.2 = Esc::Backslash,
                        0x20..=0x7F if b != b'"' => f.0 += 1,
                        0xC2..=0xDF => f = (len + 1, UTF8_TAIL, Esc::None),
                        0xE0 => f = (len + 1, UTF8_E0, Esc::None),
                        0xED => f = (len + 1, UTF8_ED, Esc::None),
                        0xE1..=0xEF => f = (len + 1, UTF8_TAIL2, Esc::None),
                        0xF0 => f = (len + 1, UTF8_F0, Esc::None),
                        0xF1..=0xF3 => f = (len + 1, UTF8_TAIL3, Esc::None),
                        0xF4 => f = (len + 1, UTF8_F4, Esc::None),
                        _ => return Step::Rejected,
                    },
                }
                self.set_top(Frame::String {
                    max,
                    min,
                    len: f.0,
                    utf8: f.1,
                    esc: f.2,
                });
                Step::Consumed
            }
            Frame::Number {
                integer,
                st,
                digits,
            } => {
                let digit = b.is_ascii_digit();
                let cap = if integer {
                    MAX_INT_DIGITS
                } else {
                    MAX_NUM_DIGITS
                };
                let (next, digits) = match (st, b) {
                    // serde_json reads `-0` as a float.
                    (NumSt::Minus, b'0') if !integer => (NumSt::Zero, 1),
                    (NumSt::Minus, b'1'..=b'9') => (NumSt::Int, 1),
                    (NumSt::Int, _) if digit && digits < cap => (NumSt::Int, digits + 1),
                    (NumSt::Zero | NumSt::Int, b'.') if !integer => (NumSt::Dot, digits),
                    (NumSt::Zero | NumSt::Int | NumSt::Frac, b'e' | b'E') if !integer => {
                        (NumSt::E, 0)
                    }
                    (NumSt::Dot, _) if digit && digits < cap => (NumSt::Frac, digits + 1),
                    (NumSt::Frac, _) if digit && digits < cap => (NumSt::Frac, digits + 1),
                    (NumSt::E, b'+' | b'-') => (NumSt::ESign, 0),
                    (NumSt::E | NumSt::ESign, _) if digit => (NumSt::Exp, 1),
                    (NumSt::Exp, _) if digit && digits < MAX_EXP_DIGITS => (NumSt::Exp, digits + 1),
                    _ if self.frame_complete(&frame) => return Step::Finished,
                    _ => return Step::Rejected,
                };
                self.set_top(Frame::Number {
                    integer,
                    st: next,
                    digits,
                });
                Step::Consumed
            }
            Frame::Literals { node, cands, pos } => {
                let lits = self.literals(node);
                let next = filter(lits, cands, pos, b);
                if next != 0 {
                    self.set_top(Frame::Literals {
                        node,
                        cands: next,
                        pos: pos + 1,
                    });
                    Step::Consumed
                } else if complete(lits, cands, pos).is_some() {
                    Step::Finished
                } else {
                    Step::Rejected
                }
            }
            Frame::Object { node, seen, st } => {
                let Node::Object { props, required } = &g.nodes[node] else {
                    return Step::Rejected;
                };
                let key_cands = |seen: u64| all_mask(props.len()) & !seen;
                let new_st = match st {
                    ObjSt::Open | ObjSt::Value | ObjSt::Comma if self.ws_ok(b) => st,
                    ObjSt::Open | ObjSt::Comma if b == b'"' => {
                        let cands = key_cands(seen);
                        if cands == 0 {
                            return Step::Rejected;
                        }
                        ObjSt::Key { cands, pos: 1 }
                    }
                    ObjSt::Open | ObjSt::Value if b == b'}' => {
                        if seen & required != *required {
                            return Step::Rejected;
                        }
                        self.stack.pop();
                        self.value_done();
                        return Step::Consumed;
                    }
                    ObjSt::Value if b == b',' => {
                        if key_cands(seen) == 0 {
                            return Step::Rejected;
                        }
                        ObjSt::Comma
                    }
                    ObjSt::Key { cands, pos } => {
                        let mut next = 0u64;
                        for (i, (k, _)) in props.iter().enumerate() {
                            if cands & (1 << i) != 0 && k.get(pos) == Some(&b) {
                                next |= 1 << i;
                            }
                        }
                        if next == 0 {
                            return Step::Rejected;
                        }
                        match (0..props.len())
                            .find(|&i| next & (1 << i) != 0 && props[i].0.len() == pos + 1)
                        {
                            Some(i) => ObjSt::AfterKey(i),
                            None => ObjSt::Key {
                                cands: next,
                                pos: pos + 1,
                            },
                        }
                    }
                    ObjSt::AfterKey(_) | ObjSt::Colon(_) if self.ws_ok(b) => st,
                    ObjSt::AfterKey(i) if b == b':' => ObjSt::Colon(i),
                    ObjSt::Colon(i) => {
                        let child = props[i].1;
                        self.set_top(Frame::Object {
                            node,
                            seen: seen | (1 << i),
                            st: ObjSt::Value,
                        });
                        return ok(self.start_value(child, b));
                    }
                    _ => return Step::Rejected,
                };
                self.set_top(Frame::Object {
                    node,
                    seen,
                    st: new_st,
                });
                Step::Consumed
            }
            Frame::AnyObject { any, st } => {
                let new_st = match st {
                    AnyObjSt::Open
                    | AnyObjSt::Value
                    | AnyObjSt::Comma
                    | AnyObjSt::AfterKey
                    | AnyObjSt::Colon
                        if self.ws_ok(b) =>
                    {
                        st
                    }
                    AnyObjSt::Open | AnyObjSt::Comma if b == b'"' => {
                        self.set_top(Frame::AnyObject {
                            any,
                            st: AnyObjSt::Key,
                        });
                        self.stack.push(Frame::String {
                            max: u32::MAX,
                            min: 0,
                            len: 0,
                            utf8: 0,
                            esc: Esc::None,
                        });
                        return Step::Consumed;
                    }
                    AnyObjSt::Open | AnyObjSt::Value if b == b'}' => {
                        self.stack.pop();
                        self.value_done();
                        return Step::Consumed;
                    }
                    AnyObjSt::Value if b == b',' => AnyObjSt::Comma,
                    AnyObjSt::AfterKey if b == b':' => AnyObjSt::Colon,
                    AnyObjSt::Colon => {
                        self.set_top(Frame::AnyObject {
                            any,
                            st: AnyObjSt::Value,
                        });
                        return ok(self.start_any(any, b));
                    }
                    _ => return Step::Rejected,
                };
                self.set_top(Frame::AnyObject { any, st: new_st });
                Step::Consumed
            }
            Frame::Array { node, count, st } => {
                let (items, min, max, generic) = match &g.nodes[node] {
                    Node::Array { items, min, max } => (*items, *min, *max, false),
                    _ => (node, 0, u32::MAX, true),
                };
                let start = |m: &mut Self, count: u32| {
                    m.set_top(Frame::Array {
                        node,
                        count: count + 1,
                        st: ArrSt::Value,
                    });
                    if generic {
                        m.start_any(items, b)
                    } else {
                        m.start_value(items, b)
                    }
                };
                let new_st = match st {
                    _ if self.ws_ok(b) => st,
                    ArrSt::Open | ArrSt::Value if b == b']' => {
                        if count < min {
                            return Step::Rejected;
                        }
                        self.stack.pop();
                        self.value_done();
                        return Step::Consumed;
                    }
                    ArrSt::Open if count < max => return ok(start(self, count)),
                    ArrSt::Comma => return ok(start(self, count)),
                    ArrSt::Value if b == b',' && count < max => ArrSt::Comma,
                    _ => return Step::Rejected,
                };
                self.set_top(Frame::Array {
                    node,
                    count,
                    st: new_st,
                });
                Step::Consumed
            }
            Frame::ToolCall { node, st } => {
                let Node::ToolCall(names) = &g.nodes[node] else {
                    return Step::Rejected;
                };
                let ws = self.ws_ok(b);
                let new_st = match st {
                    CallSt::Open
                    | CallSt::AfterNameKey
                    | CallSt::NameColon
                    | CallSt::AfterName(_)
                    | CallSt::Comma(_)
                    | CallSt::AfterArgsKey(_)
                    | CallSt::ArgsColon(_)
                    | CallSt::AfterArgs
                        if ws =>
                    {
                        st
                    }
                    CallSt::Open if b == NAME_KEY[0] => CallSt::NameKey(1),
                    CallSt::NameKey(pos) if NAME_KEY[pos] == b => {
                        if pos + 1 == NAME_KEY.len() {
                            CallSt::AfterNameKey
                        } else {
                            CallSt::NameKey(pos + 1)
                        }
                    }
                    CallSt::AfterNameKey if b == b':' => CallSt::NameColon,
                    CallSt::NameColon | CallSt::Name { .. } => {
                        let (cands, pos) = match st {
                            CallSt::Name { cands, pos } => (cands, pos),
                            _ => (all_mask(names.len()), 0),
                        };
                        let mut next = 0u64;
                        for (i, (n, _)) in names.iter().enumerate().take(64) {
                            if cands & (1 << i) != 0 && n.get(pos) == Some(&b) {
                                next |= 1 << i;
                            }
                        }
                        if next == 0 {
                            return Step::Rejected;
                        }
                        match (0..names.len().min(64))
                            .find(|&i| next & (1 << i) != 0 && names[i].0.len() == pos + 1)
                        {
                            Some(i) => CallSt::AfterName(i),
                            None => CallSt::Name {
                                cands: next,
                                pos: pos + 1,
                            },
                        }
                    }
                    CallSt::AfterName(i) if b == b',' => CallSt::Comma(i),
                    CallSt::Comma(i) if b == ARGS_KEY[0] => CallSt::ArgsKey(i, 1),
                    CallSt::ArgsKey(i, pos) if ARGS_KEY[pos] == b => {
                        if pos + 1 == ARGS_KEY.len() {
                            CallSt::AfterArgsKey(i)
                        } else {
                            CallSt::ArgsKey(i, pos + 1)
                        }
                    }
                    CallSt::AfterArgsKey(i) if b == b':' => CallSt::ArgsColon(i),
                    CallSt::ArgsColon(i) => {
                        let args = names[i].1;
                        self.set_top(Frame::ToolCall {
                            node,
                            st: CallSt::AfterArgs,
                        });
                        return ok(self.start_value(args, b));
                    }
                    CallSt::AfterArgs if b == b'}' => {
                        self.stack.pop();
                        self.value_done();
                        return Step::Consumed;
                    }
                    _ => return Step::Rejected,
                };
                self.set_top(Frame::ToolCall { node, st: new_st });
                Step::Consumed
            }
        }
    }
}

// UTF-8 decoding states of a string: how many continuation bytes remain, and the range of the next
// one (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
const UTF8_TAIL: u8 = 1;
const UTF8_TAIL2: u8 = 2;
const UTF8_TAIL3: u8 = 3;
const UTF8_E0: u8 = 4;
const UTF8_ED: u8 = 5;
const UTF8_F0: u8 = 6;
const UTF8_F4: u8 = 7;

/// The allowed range of the next continuation byte in UTF-8 state `s` (non-zero).
fn next_range(s: u8) -> (u8, u8) {
    match s {
        UTF8_E0 => (0xA0, 0xBF),
        UTF8_ED => (0x80, 0x9F),
        UTF8_F0 => (0x90, 0xBF),
        UTF8_F4 => (0x80, 0x8F),
        _ => (0x80, 0xBF),
    }
}

/// The UTF-8 state after a continuation byte in state `s`.
fn utf8_after(s: u8) -> u8 {
    match s {
        UTF8_TAIL => 0,
        UTF8_TAIL2 | UTF8_E0 | UTF8_ED => UTF8_TAIL,
        _ => UTF8_TAIL2,
    }
}

/// Pseudo node id of the `true`/`false`/`null` literals inside generic values.
const KEYWORDS_NODE: NodeId = usize::MAX;

fn keywords() -> &'static [Vec<u8>] {
    static KEYWORDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    KEYWORDS.get_or_init(|| vec![b"true".to_vec(), b"false".to_vec(), b"null".to_vec()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepts(g: &Grammar, text: &str) -> bool {
        let mut m = g.matcher();
        m.push_all(text.as_bytes()) && m.can_end()
    }

    fn prefix_ok(g: &Grammar, text: &str) -> bool {
        g.matcher().push_all(text.as_bytes())
    }

    /// The bytes `m` accepts next.
    fn next_bytes(m: &Matcher<'_>) -> Vec<u8> {
        (0..=255u8).filter(|b| m.accepts(&[*b])).collect()
    }

    /// A random document of `g`: random accepted bytes, then (after `budget` bytes) bytes that close
    /// things. Panics if the matcher ever accepts nothing before it may end (a dead end).
    fn random_doc(g: &Grammar, rng: &mut fastrand::Rng, budget: usize) -> String {
        let mut m = g.matcher();
        let mut out = Vec::new();
        for step in 0..20_000 {
            if m.is_done() || (m.can_end() && (step > budget || rng.u8(..) < 40)) {
                return String::from_utf8(out).expect("the grammar only accepts UTF-8");
            }
            let next = next_bytes(&m);
            assert!(
                !next.is_empty(),
                "dead end after {:?}",
                String::from_utf8_lossy(&out)
            );
            let b = if step > budget {
                *b"\"}]0t:"
                    .iter()
                    .find(|b| next.contains(b))
                    .unwrap_or(&next[rng.usize(..next.len())])
            } else {
                next[rng.usize(..next.len())]
            };
            assert!(m.push(b));
            out.push(b);
        }
        panic!(
            "no end after 20000 bytes: {:?}",
            String::from_utf8_lossy(&out)
        );
    }

    /// A validator for the schema subset the grammar compiles (local `$ref`s included).
    fn valid(v: &Value, schema: &Value, doc: &Value) -> bool {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            return valid(v, doc.pointer(&r[1..]).unwrap(), doc);
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array) {
            return e.contains(v);
        }
        if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
            return branches.iter().any(|b| valid(v, b, doc));
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return true,
        };
        types.iter().any(|t| match (*t, v) {
            ("string", Value::String(s)) => {
                let n = s.chars().count() as u64;
                schema
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .is_none_or(|m| n <= m)
                    && schema
                        .get("minLength")
                        .and_then(Value::as_u64)
                        .is_none_or(|m| n >= m)
            }
            ("integer", Value::Number(n)) => {
                (n.is_i64() || n.is_u64())
                    && (schema.get("minimum").is_none() || n.as_f64().unwrap() >= 0.0)
            }
            ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) | ("null", Value::Null) => {
                true
            }
            ("array", Value::Array(items)) => {
                let item_schema = schema.get("items").cloned().unwrap_or(json!({}));
                items.iter().all(|i| valid(i, &item_schema, doc))
                    && schema
                        .get("minItems")
                        .and_then(Value::as_u64)
                        .is_none_or(|m| items.len() as u64 >= m)
                    && schema
                        .get("maxItems")
                        .and_then(Value::as_u64)
                        .is_none_or(|m| items.len() as u64 <= m)
            }
            ("object", Value::Object(map)) => {
                let props = schema.get("properties").and_then(Value::as_object);
                let required = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                required
                    .iter()
                    .all(|r| map.contains_key(r.as_str().unwrap()))
                    && map.iter().all(|(k, x)| match props {
                        Some(p) => p.get(k).is_some_and(|s| valid(x, s, doc)),
                        None => true,
                    })
            }
            _ => false,
        })
    }

    fn schemas() -> Vec<Value> {
        vec![
            json!({"type": "object", "properties": {
                "a": {"type": "integer", "format": "int64"},
                "b": {"type": "integer", "minimum": 0}
            }, "required": ["a", "b"]}),
            json!({"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit", "kelvin"]},
                "days": {"type": ["integer", "null"]},
                "precise": {"type": "boolean"},
                "ratio": {"type": "number"}
            }, "required": ["city", "unit"]}),
            json!({"type": "object", "properties": {
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1, "maxItems": 3},
                "note": {"anyOf": [{"$ref": "#/$defs/Item"}, {"type": "null"}]},
                "meta": {"type": "object"},
                "any": true
            }, "required": ["items"],
            "$defs": {"Item": {"type": "object", "properties": {
                "sku": {"type": "string", "minLength": 1},
                "qty": {"type": "integer", "minimum": 1},
                "kind": {"enum": ["a", "b", 3, null]}
            }, "required": ["sku", "qty"]}}}),
        ]
    }

    #[test]
    fn random_walks_only_produce_schema_valid_json() {
        let mut rng = fastrand::Rng::with_seed(7);
        for schema in schemas() {
            let g = Grammar::from_schema(&schema);
            for i in 0..300 {
                let text = random_doc(&g, &mut rng, 10 + i % 120);
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
                assert!(
                    valid(&v, &schema, &schema),
                    "{text} does not match {schema}"
                );
            }
        }
    }

    #[test]
    fn enums_and_types_are_enforced() {
        let g = Grammar::from_schema(&schemas()[1]);
        assert!(accepts(&g, r#"{"city": "Paris", "unit": "kelvin"}"#));
        assert!(accepts(
            &g,
            r#"{"unit":"celsius","city":"","days":null,"ratio":-1.5e3}"#
        ));
        assert!(!prefix_ok(&g, r#"{"city": "Paris", "unit": "rankine"#));
        assert!(!prefix_ok(&g, r#"{"city": 5"#));
        assert!(!prefix_ok(&g, r#"{"town""#));
        assert!(!prefix_ok(&g, r#"{"city": "Paris", "city""#));
        assert!(!prefix_ok(&g, r#"{"city": "Paris"}"#), "unit is required");
        assert!(
            !prefix_ok(&g, r#"{"city": "a very long city name""#),
            "maxLength"
        );
        assert!(!prefix_ok(&g, r#"{"days": 1.5"#), "integer");
        assert!(!prefix_ok(&g, r#"{"days": 01"#), "leading zero");
        assert!(!prefix_ok(&g, r#"{"precise": yes"#));
        assert!(!prefix_ok(&g, "{  \"city\""), "one blank at most");
        assert!(!prefix_ok(&g, "{\"city\": \"a\u{1}"), "control characters");
        assert!(!prefix_ok(&g, r#"{"city": "\ud800"#), "surrogate escapes");
        assert!(prefix_ok(&g, r#"{"city": "S\u00e3o \"P\""#));
        let ints = Grammar::from_schema(&schemas()[0]);
        assert!(accepts(&ints, r#"{"a": -3, "b": 4}"#));
        assert!(!prefix_ok(&ints, r#"{"a": -3, "b": -"#), "minimum 0");
        assert!(!accepts(&ints, r#"{"a": -3, "b": 4} "#) || accepts(&ints, r#"{"a": 1, "b": 2}"#));
    }

    #[test]
    fn grammar_ends_exactly_once() {
        let g = Grammar::from_schema(&json!({"type": "object"}));
        let mut m = g.matcher();
        assert!(m.push_all(br#"{"x": [1, {"y": null}], "z": "w"}"#));
        assert!(m.is_done() && m.can_end());
        assert!(!m.accepts(b" "), "nothing after the document");
        let n = Grammar::from_schema(&json!({"type": "integer"}));
        let mut m = n.matcher();
        assert!(m.push_all(b"42") && m.can_end() && !m.is_done());
        assert!(m.accepts(b"7") && !m.accepts(b"."));
    }

    fn tools() -> Vec<ToolDefinition> {
        vec![
            ToolDefinition {
                name: "get_weather".into(),
                description: "Weather".into(),
                parameters: schemas()[1].clone(),
                strict: None,
            },
            ToolDefinition {
                name: "add".into(),
                description: "Adds".into(),
                parameters: schemas()[0].clone(),
                strict: None,
            },
        ]
    }

    #[test]
    fn tool_calls_name_an_offered_tool_with_valid_arguments() {
        let tools = tools();
        let g = Grammar::tool_calls(&tools, "</tool_call>");
        assert!(accepts(
            &g,
            r#"[{"name": "add", "arguments": {"a": 1, "b": 2}}]</tool_call>"#
        ));
        assert!(!prefix_ok(&g, r#"[{"name": "sub""#));
        assert!(!prefix_ok(&g, r#"[{"name": "add", "arguments": {"a": "1""#));
        assert!(!prefix_ok(&g, r#"[{"arguments""#), "name comes first");
        let mut rng = fastrand::Rng::with_seed(11);
        for i in 0..300 {
            let body = random_doc(&g, &mut rng, 20 + i % 100);
            assert!(body.ends_with("</tool_call>"), "{body}");
            let (_, calls) = crate::local::parse_tool_calls(&format!("<tool_call>{body}"))
                .unwrap_or_else(|| panic!("unparseable: {body}"));
            for call in calls {
                let tool = tools
                    .iter()
                    .find(|t| t.name == call.name)
                    .expect("offered tool");
                let args: Value = serde_json::from_str(&call.arguments).unwrap();
                assert!(valid(&args, &tool.parameters, &tool.parameters), "{body}");
            }
        }
    }

    #[test]
    fn forced_prefix_is_accepted() {
        let g = Grammar::tool_calls(&tools(), "</tool_call>");
        assert!(prefix_ok(&g, r#"[{"name": "get_weather", "arguments": "#));
        assert!(prefix_ok(&g, r#"[{"name": ""#));
    }
}
