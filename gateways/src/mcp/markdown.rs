//! Markdown <-> BlockNote, the conversion Paca's MCP server applies to task
//! descriptions, doc content and comments (Markdown in from the model,
//! BlockNote JSON stored, Markdown back out).
//!
//! Parsing uses a real CommonMark parser (`pulldown-cmark`, with GFM tables,
//! task lists and strikethrough); rendering walks the BlockNote JSON. Block
//! types are the ones Paca's web app writes: `paragraph`, `heading`,
//! `bulletListItem`, `numberedListItem`, `checkListItem`, `codeBlock`,
//! `quote`, `table`, `image`; inline content is styled `text` runs
//! (`bold`, `italic`, `code`, `strike`, `underline`) and `link`s. The web
//! app's own inline nodes (`teamMention`, `taskReference`, `docReference`)
//! and custom blocks (`mermaid`, `annotationCard`) are rendered the way
//! Paca's server degrades them, so a model still sees who or what they name.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde_json::{Map, Value, json};

fn default_props() -> Map<String, Value> {
    let mut props = Map::new();
    props.insert("textColor".into(), json!("default"));
    props.insert("backgroundColor".into(), json!("default"));
    props.insert("textAlignment".into(), json!("left"));
    props
}

fn block(kind: &str, props: Map<String, Value>, content: Value, children: Vec<Value>) -> Value {
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "type": kind,
        "props": props,
        "content": content,
        "children": children,
    })
}

/// A style set of one inline run.
#[derive(Clone, Default, PartialEq, Eq)]
struct Styles {
    bold: bool,
    italic: bool,
    code: bool,
    strike: bool,
}

impl Styles {
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        if self.bold {
            map.insert("bold".into(), json!(true));
        }
        if self.italic {
            map.insert("italic".into(), json!(true));
        }
        if self.code {
            map.insert("code".into(), json!(true));
        }
        if self.strike {
            map.insert("strike".into(), json!(true));
        }
        Value::Object(map)
    }
}

/// Collects inline content (styled text runs and links).
#[derive(Default)]
struct Inline {
    items: Vec<Value>,
    /// Open link: href and its runs.
    link: Option<(String, Vec<Value>)>,
}

impl Inline {
    fn push_text(&mut self, text: &str, styles: &Styles) {
        if text.is_empty() {
            return;
        }
        let target = match &mut self.link {
            Some((_, runs)) => runs,
            None => &mut self.items,
        };
        // Merge with the previous run when the style is the same.
        if let Some(last) = target.last_mut()
            && last.get("type").and_then(Value::as_str) == Some("text")
            && last.get("styles") == Some(&styles.to_json())
            && let Some(Value::String(prev)) = last.get_mut("text")
        {
            prev.push_str(text);
            return;
        }
        target.push(json!({"type": "text", "text": text, "styles": styles.to_json()}));
    }

    fn take(&mut self) -> Vec<Value> {
        if let Some((href, runs)) = self.link.take() {
            self.items
                .push(json!({"type": "link", "href": href, "content": runs}));
        }
        std::mem::take(&mut self.items)
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty() && self.link.is_none()
    }
}

/// One open container while parsing.
enum Frame {
    /// A list: ordered start number (None for bullets).
    List {
        start: Option<u64>,
        first: bool,
    },
    /// A list item being built: its type, props, own inline content (from
    /// the first paragraph) and children.
    Item {
        kind: &'static str,
        props: Map<String, Value>,
        content: Option<Vec<Value>>,
        children: Vec<Value>,
    },
    Quote,
}

/// Converts Markdown to a BlockNote block array. Empty input gives `[]`.
pub fn markdown_to_blocks(markdown: &str) -> Vec<Value> {
    if markdown.trim().is_empty() {
        return Vec::new();
    }
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS | Options::ENABLE_STRIKETHROUGH;
    let mut out: Vec<Value> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut inline = Inline::default();
    let mut styles = Styles::default();
    // Paragraph / heading / code / table cell being built.
    let mut heading: Option<u8> = None;
    let mut in_paragraph = false;
    let mut code: Option<(String, String)> = None;
    let mut table: Option<Vec<Vec<Vec<Value>>>> = None;
    let mut row: Vec<Vec<Value>> = Vec::new();
    let mut image: Option<(String, String)> = None;

    // Where a finished block goes: the innermost item's children, or the top.
    fn emit(stack: &mut [Frame], out: &mut Vec<Value>, value: Value) {
        for frame in stack.iter_mut().rev() {
            if let Frame::Item { children, .. } = frame {
                children.push(value);
                return;
            }
        }
        out.push(value);
    }

    fn in_quote(stack: &[Frame]) -> bool {
        stack
            .iter()
            .rev()
            .take_while(|f| !matches!(f, Frame::Item { .. }))
            .any(|f| matches!(f, Frame::Quote))
    }

    // Inline content that belongs to the innermost item (tight lists have
    // no paragraph around an item's text).
    fn flush_item_text(stack: &mut [Frame], inline: &mut Inline) {
        if inline.is_empty() {
            return;
        }
        let runs = inline.take();
        if let Some(Frame::Item {
            content, children, ..
        }) = stack.last_mut()
        {
            if content.is_none() {
                *content = Some(runs);
            } else {
                children.push(block(
                    "paragraph",
                    default_props(),
                    Value::Array(runs),
                    vec![],
                ));
            }
        }
    }

    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => {
                    if matches!(stack.last(), Some(Frame::Item { .. })) {
                        flush_item_text(&mut stack, &mut inline);
                    }
                    in_paragraph = true;
                }
                Tag::Heading { level, .. } => {
                    heading = Some(match level {
                        HeadingLevel::H1 => 1,
                        HeadingLevel::H2 => 2,
                        HeadingLevel::H3 => 3,
                        HeadingLevel::H4 => 4,
                        HeadingLevel::H5 => 5,
                        HeadingLevel::H6 => 6,
                    })
                }
                Tag::BlockQuote(_) => stack.push(Frame::Quote),
                Tag::CodeBlock(kind) => {
                    let lang = match kind {
                        CodeBlockKind::Fenced(info) => {
                            info.split_whitespace().next().unwrap_or("").to_owned()
                        }
                        CodeBlockKind::Indented => String::new(),
                    };
                    code = Some((lang, String::new()));
                }
                Tag::List(start) => {
                    flush_item_text(&mut stack, &mut inline);
                    stack.push(Frame::List { start, first: true });
                }
                Tag::Item => {
                    let (kind, mut props) = match stack.last_mut() {
                        Some(Frame::List {
                            start: Some(n),
                            first,
                        }) => {
                            let mut props = default_props();
                            if *first && *n != 1 {
                                props.insert("start".into(), json!(n));
                            }
                            *first = false;
                            ("numberedListItem", props)
                        }
                        _ => ("bulletListItem", default_props()),
                    };
                    props.remove("checked");
                    stack.push(Frame::Item {
                        kind,
                        props,
                        content: None,
                        children: Vec::new(),
                    });
                }
                Tag::Table(_) => table = Some(Vec::new()),
                Tag::TableHead | Tag::TableRow => row = Vec::new(),
                Tag::TableCell => {}
                Tag::Emphasis => styles.italic = true,
                Tag::Strong => styles.bold = true,
                Tag::Strikethrough => styles.strike = true,
                Tag::Link { dest_url, .. } => {
                    let runs = inline.take();
                    inline.items = runs;
                    inline.link = Some((dest_url.to_string(), Vec::new()));
                }
                Tag::Image { dest_url, .. } => image = Some((dest_url.to_string(), String::new())),
                _ => {}
            },
            Event::End(end) => match end {
                TagEnd::Paragraph => {
                    in_paragraph = false;
                    let runs = inline.take();
                    if let Some(Frame::Item { content, .. }) = stack.last_mut()
                        && content.is_none()
                    {
                        *content = Some(runs);
                        continue;
                    }
                    // A paragraph that is only an image becomes an image block.
                    if runs.is_empty() {
                        continue;
                    }
                    let kind = if in_quote(&stack) {
                        "quote"
                    } else {
                        "paragraph"
                    };
                    let props = if kind == "quote" {
                        let mut p = default_props();
                        p.remove("textAlignment");
                        p
                    } else {
                        default_props()
                    };
                    emit(
                        &mut stack,
                        &mut out,
                        block(kind, props, Value::Array(runs), vec![]),
                    );
                }
                TagEnd::Heading(_) => {
                    let mut props = default_props();
                    props.insert("level".into(), json!(heading.take().unwrap_or(1)));
                    let runs = inline.take();
                    emit(
                        &mut stack,
                        &mut out,
                        block("heading", props, Value::Array(runs), vec![]),
                    );
                }
                TagEnd::BlockQuote(_) => {
                    stack.pop();
                }
                TagEnd::CodeBlock => {
                    if let Some((lang, mut text)) = code.take() {
                        if text.ends_with('\n') {
                            text.pop();
                        }
                        let mut props = Map::new();
                        props.insert(
                            "language".into(),
                            json!(if lang.is_empty() {
                                "text".to_owned()
                            } else {
                                lang
                            }),
                        );
                        let content = if text.is_empty() {
                            json!([])
                        } else {
                            json!([{"type": "text", "text": text, "styles": {}}])
                        };
                        emit(
                            &mut stack,
                            &mut out,
                            block("codeBlock", props, content, vec![]),
                        );
                    }
                }
                TagEnd::List(_) => {
                    stack.pop();
                }
                TagEnd::Item => {
                    flush_item_text(&mut stack, &mut inline);
                    if let Some(Frame::Item {
                        kind,
                        props,
                        content,
                        children,
                    }) = stack.pop()
                    {
                        let content = Value::Array(content.unwrap_or_default());
                        emit(&mut stack, &mut out, block(kind, props, content, children));
                    }
                }
                TagEnd::TableCell => row.push(inline.take()),
                TagEnd::TableHead | TagEnd::TableRow => {
                    if let Some(rows) = table.as_mut() {
                        rows.push(std::mem::take(&mut row));
                    }
                }
                TagEnd::Table => {
                    if let Some(rows) = table.take() {
                        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
                        let rows: Vec<Value> = rows
                            .into_iter()
                            .map(|cells| {
                                let cells: Vec<Value> = cells
                                    .into_iter()
                                    .map(|c| {
                                        json!({
                                            "type": "tableCell",
                                            "props": {"colspan": 1, "rowspan": 1,
                                                "backgroundColor": "default", "textColor": "default",
                                                "textAlignment": "left"},
                                            "content": c,
                                        })
                                    })
                                    .collect();
                                json!({ "cells": cells })
                            })
                            .collect();
                        let content = json!({
                            "type": "tableContent",
                            "columnWidths": vec![Value::Null; columns],
                            "headerRows": 1,
                            "rows": rows,
                        });
                        let mut props = Map::new();
                        props.insert("textColor".into(), json!("default"));
                        emit(&mut stack, &mut out, block("table", props, content, vec![]));
                    }
                }
                TagEnd::Emphasis => styles.italic = false,
                TagEnd::Strong => styles.bold = false,
                TagEnd::Strikethrough => styles.strike = false,
                TagEnd::Link => {
                    if let Some((href, runs)) = inline.link.take() {
                        inline
                            .items
                            .push(json!({"type": "link", "href": href, "content": runs}));
                    }
                }
                TagEnd::Image => {
                    if let Some((url, alt)) = image.take() {
                        if in_paragraph && inline.is_empty() && table.is_none() {
                            let mut props = Map::new();
                            props.insert("url".into(), json!(url));
                            props.insert("caption".into(), json!(alt));
                            props.insert("name".into(), json!(""));
                            props.insert("textAlignment".into(), json!("left"));
                            props.insert("backgroundColor".into(), json!("default"));
                            props.insert("showPreview".into(), json!(true));
                            emit(
                                &mut stack,
                                &mut out,
                                block("image", props, json!([]), vec![]),
                            );
                        } else {
                            inline.push_text(&format!("![{alt}]({url})"), &styles);
                        }
                    }
                }
                _ => {}
            },
            Event::Text(text) => {
                if let Some((_, buf)) = code.as_mut() {
                    buf.push_str(&text);
                } else if let Some((_, alt)) = image.as_mut() {
                    alt.push_str(&text);
                } else {
                    inline.push_text(&text, &styles);
                }
            }
            Event::Code(text) => {
                let mut s = styles.clone();
                s.code = true;
                inline.push_text(&text, &s);
            }
            Event::SoftBreak => inline.push_text(" ", &styles),
            Event::HardBreak => inline.push_text("\n", &styles),
            Event::Html(html) | Event::InlineHtml(html) if code.is_none() => {
                // Raw HTML is kept as text (BlockNote has no HTML block).
                let text = html.trim_end_matches('\n');
                if in_paragraph
                    || heading.is_some()
                    || !matches!(stack.last(), None | Some(Frame::Quote))
                {
                    inline.push_text(text, &styles);
                } else if !text.trim().is_empty() {
                    let content = json!([{"type": "text", "text": text, "styles": {}}]);
                    emit(
                        &mut stack,
                        &mut out,
                        block("paragraph", default_props(), content, vec![]),
                    );
                }
            }
            Event::TaskListMarker(checked) => {
                if let Some(Frame::Item { kind, props, .. }) = stack.last_mut() {
                    *kind = "checkListItem";
                    props.remove("start");
                    props.insert("checked".into(), json!(checked));
                }
            }
            Event::Rule => emit(
                &mut stack,
                &mut out,
                block(
                    "paragraph",
                    default_props(),
                    json!([{"type": "text", "text": "---", "styles": {}}]),
                    vec![],
                ),
            ),
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------- rendering

/// Converts BlockNote content to Markdown. Accepts the block array, the
/// legacy `{"text": "..."}` comment shape, or `null`.
pub fn blocks_to_markdown(value: &Value) -> String {
    match value {
        Value::Array(blocks) => render_blocks(blocks, 0).trim_end().to_owned(),
        Value::Object(map) => {
            if let Some(text) = map.get("text").and_then(Value::as_str) {
                text.to_owned()
            } else if let Some(content) = map.get("content") {
                blocks_to_markdown(content)
            } else {
                String::new()
            }
        }
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

fn is_list(kind: &str) -> bool {
    matches!(
        kind,
        "bulletListItem" | "numberedListItem" | "checkListItem"
    )
}

fn render_blocks(blocks: &[Value], indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let mut prev_kind: Option<String> = None;
    let mut number: u64 = 0;
    for b in blocks {
        let kind = b.get("type").and_then(Value::as_str).unwrap_or("paragraph");
        let props = b.get("props").cloned().unwrap_or(Value::Null);
        let content = b.get("content").cloned().unwrap_or(Value::Null);
        let children = b
            .get("children")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let text = render_inline(&content);

        // Blank line between blocks, except between items of one list.
        let same_list = prev_kind.as_deref() == Some(kind) && is_list(kind);
        if !out.is_empty() {
            out.push_str(if same_list { "\n" } else { "\n\n" });
        }
        if kind == "numberedListItem" {
            if !same_list {
                number = props.get("start").and_then(Value::as_u64).unwrap_or(1);
            } else {
                number += 1;
            }
        }
        let rendered = match kind {
            "heading" => {
                let level = props
                    .get("level")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .clamp(1, 6);
                format!("{pad}{} {}", "#".repeat(level as usize), text)
            }
            "bulletListItem" | "numberedListItem" | "checkListItem" => {
                let marker = match kind {
                    "numberedListItem" => format!("{number}. "),
                    "checkListItem" => {
                        let checked = props
                            .get("checked")
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        format!("- [{}] ", if checked { "x" } else { " " })
                    }
                    _ => "- ".to_owned(),
                };
                let inner = indent + marker.len().min(4);
                let mut s = format!("{pad}{marker}{}", indent_continuation(&text, inner));
                if let Some(first) = children.first() {
                    // A nested list follows directly; another block needs a
                    // blank line or it would continue the item's paragraph.
                    let nested_list = first
                        .get("type")
                        .and_then(Value::as_str)
                        .is_some_and(is_list);
                    s.push_str(if nested_list { "\n" } else { "\n\n" });
                    s.push_str(&render_blocks(&children, inner));
                }
                prev_kind = Some(kind.to_owned());
                out.push_str(&s);
                continue;
            }
            "codeBlock" => {
                let lang = props
                    .get("language")
                    .and_then(Value::as_str)
                    .filter(|l| *l != "text" && *l != "plaintext")
                    .unwrap_or("");
                let code = plain_text(&content);
                let fence = fence_for(&code);
                let body: String = code
                    .lines()
                    .map(|l| format!("{pad}{l}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                if code.is_empty() {
                    format!("{pad}{fence}{lang}\n{pad}{fence}")
                } else {
                    format!("{pad}{fence}{lang}\n{body}\n{pad}{fence}")
                }
            }
            "quote" => text
                .split('\n')
                .map(|l| format!("{pad}> {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            "table" => render_table(&content, &pad),
            "image" => {
                let url = props.get("url").and_then(Value::as_str).unwrap_or("");
                let caption = props
                    .get("caption")
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                    .or_else(|| props.get("name").and_then(Value::as_str))
                    .unwrap_or("");
                format!("{pad}![{caption}]({url})")
            }
            "mermaid" => {
                let code = props.get("code").and_then(Value::as_str).unwrap_or("");
                format!("{pad}```mermaid\n{code}\n{pad}```")
            }
            "annotationCard" => {
                let id = props.get("id").and_then(Value::as_str).unwrap_or("");
                if id.is_empty() {
                    format!("{pad}[Comment reference]")
                } else {
                    format!("{pad}[Comment reference (id: {id})]")
                }
            }
            "paragraph" if plain_text(&content) == "---" => format!("{pad}---"),
            _ => {
                if text.is_empty() && children.is_empty() {
                    // An empty paragraph: BlockNote's trailing blank block.
                    if out.ends_with("\n\n") {
                        out.truncate(out.len() - 2);
                    } else if out.ends_with('\n') {
                        out.pop();
                    }
                    prev_kind = Some(kind.to_owned());
                    continue;
                }
                format!("{pad}{}", indent_continuation(&text, indent))
            }
        };
        out.push_str(&rendered);
        if !children.is_empty() {
            out.push_str("\n\n");
            out.push_str(&render_blocks(&children, indent + 2));
        }
        prev_kind = Some(kind.to_owned());
    }
    out
}

/// Continuation lines of a multi-line inline text, indented under the block.
fn indent_continuation(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.replace('\n', &format!("\n{pad}"))
}

fn fence_for(code: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in code.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn render_table(content: &Value, pad: &str) -> String {
    let rows = content
        .get("rows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.get("cells")
                .and_then(Value::as_array)
                .map(|cells| {
                    cells
                        .iter()
                        .map(|cell| {
                            // Newer BlockNote: {type: tableCell, content}; older: inline array.
                            let inline = if cell.is_array() {
                                cell.clone()
                            } else {
                                cell.get("content").cloned().unwrap_or(Value::Null)
                            };
                            render_inline(&inline)
                                .replace('|', "\\|")
                                .replace('\n', " ")
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    if columns == 0 {
        return String::new();
    }
    let line = |row: &[String]| {
        let mut s = format!("{pad}|");
        for i in 0..columns {
            s.push(' ');
            s.push_str(row.get(i).map(String::as_str).unwrap_or(""));
            s.push_str(" |");
        }
        s
    };
    let mut out = vec![line(&cells[0])];
    out.push(format!("{pad}|{}", " --- |".repeat(columns)));
    for row in &cells[1..] {
        out.push(line(row));
    }
    out.join("\n")
}

/// The plain text of inline content (for code blocks).
fn plain_text(content: &Value) -> String {
    match content {
        Value::Array(items) => items.iter().map(plain_text).collect(),
        Value::Object(map) => {
            if let Some(t) = map.get("text").and_then(Value::as_str) {
                t.to_owned()
            } else {
                map.get("content").map(plain_text).unwrap_or_default()
            }
        }
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// Escapes characters that would otherwise start inline Markdown syntax.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes line starts that would turn rendered inline text into another
/// block (a heading, quote, list item, table row or rule).
fn escape_line_starts(text: &str) -> String {
    let mut fixed = String::with_capacity(text.len() + 4);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            fixed.push('\n');
        }
        let trimmed = line.trim_start();
        let lead = &line[..line.len() - trimmed.len()];
        let needs = trimmed.starts_with('#')
            || trimmed.starts_with('>')
            || trimmed.starts_with("- ")
            || trimmed.starts_with("+ ")
            || trimmed == "-"
            || trimmed.starts_with("---")
            || trimmed.starts_with("===")
            || trimmed.starts_with('|')
            || ordered_marker(trimmed);
        if needs {
            fixed.push_str(lead);
            fixed.push('\\');
            fixed.push_str(trimmed);
        } else {
            fixed.push_str(line);
        }
    }
    fixed
}

fn ordered_marker(s: &str) -> bool {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && matches!(s[digits..].chars().next(), Some('.') | Some(')'))
}

fn style_on(styles: &Value, key: &str) -> bool {
    styles.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Renders inline content: styled text, links and the web app's mentions.
fn render_inline(content: &Value) -> String {
    let items = match content {
        Value::Array(items) => items,
        Value::String(s) => return escape(s),
        _ => return String::new(),
    };
    let mut out = String::new();
    for item in items {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("text");
        let props = item.get("props").cloned().unwrap_or(Value::Null);
        let prop = |k: &str| {
            props
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let piece = match kind {
            "text" => render_run(item),
            "link" => {
                let href = item.get("href").and_then(Value::as_str).unwrap_or("");
                let inner = item.get("content").map(render_inline).unwrap_or_default();
                format!("[{inner}]({href})")
            }
            "teamMention" => {
                let (name, id) = (prop("name"), prop("id"));
                let name = if name.is_empty() {
                    "Unknown".into()
                } else {
                    name
                };
                escape(&if id.is_empty() {
                    format!("@{name}")
                } else {
                    format!("@{name} (id: {id})")
                })
            }
            "taskReference" => {
                let (title, id) = (prop("title"), prop("id"));
                let title = if title.is_empty() {
                    "Unknown".into()
                } else {
                    title
                };
                escape(&if id.is_empty() {
                    format!("#{title}")
                } else {
                    format!("#{title} (id: {id})")
                })
            }
            "docReference" => {
                let (title, id) = (prop("title"), prop("id"));
                let title = if title.is_empty() {
                    "Unknown".into()
                } else {
                    title
                };
                escape(&if id.is_empty() {
                    format!("📄 {title}")
                } else {
                    format!("📄 {title} (id: {id})")
                })
            }
            _ => item
                .get("text")
                .and_then(Value::as_str)
                .map(escape)
                .or_else(|| item.get("content").map(render_inline))
                .unwrap_or_default(),
        };
        out.push_str(&piece);
    }
    escape_line_starts(&out)
}

fn render_run(item: &Value) -> String {
    let text = item.get("text").and_then(Value::as_str).unwrap_or("");
    if text.is_empty() {
        return String::new();
    }
    let styles = item.get("styles").cloned().unwrap_or(Value::Null);
    if style_on(&styles, "code") {
        // Code spans keep their text verbatim; use a longer delimiter when
        // the text itself contains backticks.
        let ticks = "`".repeat(fence_for(text).len().saturating_sub(2).max(1));
        let spaced = text.starts_with('`') || text.ends_with('`');
        return if spaced {
            format!("{ticks} {text} {ticks}")
        } else {
            format!("{ticks}{text}{ticks}")
        };
    }
    // Markers go inside surrounding whitespace: `** bold**` is not emphasis.
    let core = text.trim();
    if core.is_empty() {
        return escape(text);
    }
    let lead = &text[..text.len() - text.trim_start().len()];
    let trail = &text[text.trim_end().len()..];
    let mut open = String::new();
    if style_on(&styles, "bold") {
        open.push_str("**");
    }
    if style_on(&styles, "italic") {
        open.push('*');
    }
    if style_on(&styles, "strike") {
        open.push_str("~~");
    }
    let close: String = open.chars().rev().collect();
    // Hard line breaks inside a run: a backslash before the newline.
    let body = escape(core).replace('\n', "\\\n");
    format!("{}{open}{body}{close}{}", escape(lead), escape(trail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_ids(mut v: Value) -> Value {
        match &mut v {
            Value::Array(items) => {
                for i in items.iter_mut() {
                    *i = strip_ids(i.take());
                }
            }
            Value::Object(map) => {
                map.remove("id");
                for (_, val) in map.iter_mut() {
                    *val = strip_ids(val.take());
                }
            }
            _ => {}
        }
        v
    }

    fn kinds(blocks: &[Value]) -> Vec<&str> {
        blocks.iter().map(|b| b["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn empty_markdown_is_no_blocks() {
        assert!(markdown_to_blocks("").is_empty());
        assert!(markdown_to_blocks("  \n\n").is_empty());
        assert_eq!(blocks_to_markdown(&json!([])), "");
        assert_eq!(blocks_to_markdown(&Value::Null), "");
    }

    #[test]
    fn paragraph_with_inline_styles_and_link() {
        let blocks =
            markdown_to_blocks("Plain **bold** *italic* `code` ~~gone~~ [docs](https://x.io/a)");
        assert_eq!(kinds(&blocks), ["paragraph"]);
        let content = strip_ids(blocks[0]["content"].clone());
        assert_eq!(
            content,
            json!([
                {"type": "text", "text": "Plain ", "styles": {}},
                {"type": "text", "text": "bold", "styles": {"bold": true}},
                {"type": "text", "text": " ", "styles": {}},
                {"type": "text", "text": "italic", "styles": {"italic": true}},
                {"type": "text", "text": " ", "styles": {}},
                {"type": "text", "text": "code", "styles": {"code": true}},
                {"type": "text", "text": " ", "styles": {}},
                {"type": "text", "text": "gone", "styles": {"strike": true}},
                {"type": "text", "text": " ", "styles": {}},
                {"type": "link", "href": "https://x.io/a", "content": [{"type": "text", "text": "docs", "styles": {}}]}
            ])
        );
        assert_eq!(
            blocks_to_markdown(&Value::Array(blocks)),
            "Plain **bold** *italic* `code` ~~gone~~ [docs](https://x.io/a)"
        );
    }

    #[test]
    fn headings_keep_their_level() {
        let blocks = markdown_to_blocks("# One\n\n## Two\n\n### Three");
        assert_eq!(kinds(&blocks), ["heading", "heading", "heading"]);
        let levels: Vec<u64> = blocks
            .iter()
            .map(|b| b["props"]["level"].as_u64().unwrap())
            .collect();
        assert_eq!(levels, [1, 2, 3]);
        assert_eq!(blocks[1]["content"][0]["text"], "Two");
        assert_eq!(
            blocks_to_markdown(&Value::Array(blocks)),
            "# One\n\n## Two\n\n### Three"
        );
    }

    #[test]
    fn bullet_numbered_and_check_lists_with_nesting() {
        let md = "- a\n- b\n  - b1\n  - b2\n\n1. first\n2. second\n\n- [ ] todo\n- [x] done";
        let blocks = markdown_to_blocks(md);
        assert_eq!(
            kinds(&blocks),
            [
                "bulletListItem",
                "bulletListItem",
                "numberedListItem",
                "numberedListItem",
                "checkListItem",
                "checkListItem"
            ]
        );
        assert_eq!(
            kinds(blocks[1]["children"].as_array().unwrap()),
            ["bulletListItem", "bulletListItem"]
        );
        assert_eq!(blocks[1]["children"][1]["content"][0]["text"], "b2");
        assert_eq!(blocks[4]["props"]["checked"], false);
        assert_eq!(blocks[5]["props"]["checked"], true);
        assert_eq!(blocks[5]["content"][0]["text"], "done");
        assert_eq!(blocks_to_markdown(&Value::Array(blocks)), md);
    }

    #[test]
    fn ordered_list_start_number_survives() {
        let blocks = markdown_to_blocks("3. three\n4. four");
        assert_eq!(blocks[0]["props"]["start"], 3);
        assert_eq!(
            blocks_to_markdown(&Value::Array(blocks)),
            "3. three\n4. four"
        );
    }

    #[test]
    fn code_block_keeps_language_and_text() {
        let md = "```rust\nfn main() {\n    println!(\"*hi*\");\n}\n```";
        let blocks = markdown_to_blocks(md);
        assert_eq!(kinds(&blocks), ["codeBlock"]);
        assert_eq!(blocks[0]["props"]["language"], "rust");
        assert_eq!(
            blocks[0]["content"][0]["text"],
            "fn main() {\n    println!(\"*hi*\");\n}"
        );
        assert_eq!(blocks_to_markdown(&Value::Array(blocks)), md);
    }

    #[test]
    fn quote_block() {
        let blocks = markdown_to_blocks("> careful **now**");
        assert_eq!(kinds(&blocks), ["quote"]);
        assert_eq!(blocks[0]["content"][1]["styles"]["bold"], true);
        assert_eq!(
            blocks_to_markdown(&Value::Array(blocks)),
            "> careful **now**"
        );
    }

    #[test]
    fn gfm_table() {
        let md = "| Name | Points |\n| --- | --- |\n| a | **3** |\n| b | 5 |";
        let blocks = markdown_to_blocks(md);
        assert_eq!(kinds(&blocks), ["table"]);
        let rows = blocks[0]["content"]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1]["cells"][1]["content"][0]["styles"]["bold"], true);
        assert_eq!(blocks_to_markdown(&Value::Array(blocks)), md);
    }

    #[test]
    fn image_paragraph_becomes_image_block() {
        let blocks = markdown_to_blocks("![diagram](https://x.io/d.png)");
        assert_eq!(kinds(&blocks), ["image"]);
        assert_eq!(blocks[0]["props"]["url"], "https://x.io/d.png");
        assert_eq!(
            blocks_to_markdown(&Value::Array(blocks)),
            "![diagram](https://x.io/d.png)"
        );
    }

    #[test]
    fn hard_break_and_escaping_round_trip() {
        let md = "line one\\\nline two with 2\\*3 and a \\# sign";
        let blocks = markdown_to_blocks(md);
        assert_eq!(
            blocks[0]["content"][0]["text"],
            "line one\nline two with 2*3 and a # sign"
        );
        let back = blocks_to_markdown(&Value::Array(blocks.clone()));
        assert_eq!(
            strip_ids(Value::Array(markdown_to_blocks(&back))),
            strip_ids(Value::Array(blocks))
        );
        // Text that looks like block syntax stays text.
        let blocks = markdown_to_blocks("\\# not a heading\n\n1\\. not a list");
        assert_eq!(kinds(&blocks), ["paragraph", "paragraph"]);
        let back = blocks_to_markdown(&Value::Array(blocks.clone()));
        assert_eq!(
            kinds(&markdown_to_blocks(&back)),
            ["paragraph", "paragraph"]
        );
    }

    #[test]
    fn full_document_round_trips_through_blocks() {
        let md = "# Scope\n\nFilter **tools** by *permissions* at `startup`.\n\n## Steps\n\n1. Fetch permissions\n2. Filter the list\n   - keep global tools\n   - hide the rest\n\n- [x] designed\n- [ ] built\n\n```json\n{\"a\": 1}\n```\n\n> Note: see [the spec](https://example.com/spec)\n\n| k | v |\n| --- | --- |\n| x | 1 |";
        let blocks = markdown_to_blocks(md);
        let back = blocks_to_markdown(&Value::Array(blocks.clone()));
        assert_eq!(back, md);
        assert_eq!(
            strip_ids(Value::Array(markdown_to_blocks(&back))),
            strip_ids(Value::Array(blocks))
        );
    }

    #[test]
    fn renders_web_app_blocks_written_by_the_editor() {
        // Shapes as Paca's web app stores them (ids, props, trailing empty paragraph).
        let blocks = json!([
            {"id": "1", "type": "heading", "props": {"level": 2, "textColor": "default"}, "content": [{"type": "text", "text": "Title", "styles": {}}], "children": []},
            {"id": "2", "type": "paragraph", "props": {}, "content": [
                {"type": "text", "text": "Ping ", "styles": {}},
                {"type": "teamMention", "props": {"id": "m1", "name": "Ann"}},
                {"type": "text", "text": " about ", "styles": {}},
                {"type": "taskReference", "props": {"id": "t1", "title": "Login"}},
                {"type": "text", "text": " and ", "styles": {"underline": true}},
                {"type": "docReference", "props": {"id": "d1", "title": "Spec"}}
            ], "children": []},
            {"id": "3", "type": "mermaid", "props": {"code": "graph TD; A-->B"}, "content": [], "children": []},
            {"id": "4", "type": "table", "props": {}, "content": {"type": "tableContent", "rows": [
                {"cells": [[{"type": "text", "text": "h1", "styles": {}}], [{"type": "text", "text": "h2", "styles": {}}]]},
                {"cells": [[{"type": "text", "text": "a", "styles": {}}], []]}
            ]}, "children": []},
            {"id": "5", "type": "paragraph", "props": {}, "content": [], "children": []}
        ]);
        let md = blocks_to_markdown(&blocks);
        assert_eq!(
            md,
            "## Title\n\nPing @Ann (id: m1) about #Title (id: t1) and 📄 Spec (id: d1)"
                .replace("#Title", "#Login")
                + "\n\n```mermaid\ngraph TD; A-->B\n```\n\n| h1 | h2 |\n| --- | --- |\n| a |  |"
        );
    }

    #[test]
    fn legacy_text_comment_shape() {
        assert_eq!(blocks_to_markdown(&json!({"text": "hello"})), "hello");
    }

    #[test]
    fn nested_bold_link_and_blocks_under_list_items() {
        let md = "- item with [a **bold** link](https://a.b)\n\n  second paragraph of the item";
        let blocks = markdown_to_blocks(md);
        assert_eq!(kinds(&blocks), ["bulletListItem"]);
        let link = &blocks[0]["content"][1];
        assert_eq!(link["type"], "link");
        assert_eq!(link["content"][1]["styles"]["bold"], true);
        assert_eq!(
            kinds(blocks[0]["children"].as_array().unwrap()),
            ["paragraph"]
        );
        let back = blocks_to_markdown(&Value::Array(blocks.clone()));
        assert_eq!(
            strip_ids(Value::Array(markdown_to_blocks(&back))),
            strip_ids(Value::Array(blocks))
        );
    }
}
