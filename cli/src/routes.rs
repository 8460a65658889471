//! `idp-ratelimit routes`: the route → bucket → limit table of a
//! configuration (or of one configuration across plans), as text, Markdown
//! (the README's tables are this output) or JSON. Which routes still lead
//! where, after overrides replaced catalog routes, is asked of the compiled
//! router itself.

use idp_ratelimit::catalog::auth0::Edition;
use idp_ratelimit::configure::configure;
use idp_ratelimit::limiter::Limit;
use idp_ratelimit::policy::{Bucket, Target};
use idp_ratelimit::router::{expand, KNOWN_METHODS};
use serde_json::{json, Value};

use crate::check::KEY_PREFIX;
use crate::{describe, edit, Failure};

#[derive(Clone, Debug, PartialEq)]
struct RouteText {
    /// `None`: every method, but `except`.
    methods: Option<Vec<String>>,
    except: Vec<String>,
    pattern: String,
}

impl RouteText {
    fn every_method(&self) -> bool {
        self.methods.is_none() && self.except.is_empty()
    }

    /// Whether this `/x/*` route covers `other` (a path at or under `/x`).
    fn covers(&self, other: &RouteText) -> bool {
        let Some(base) = self.pattern.strip_suffix("/*") else {
            return false;
        };
        self.every_method()
            && self != other
            && (other.pattern == base || other.pattern.starts_with(&format!("{base}/")))
    }

    fn text(&self, markdown: bool) -> String {
        let quote = |s: &str| {
            if markdown {
                format!("`{s}`")
            } else {
                s.to_string()
            }
        };
        let methods = |ms: &[String]| ms.iter().map(|m| quote(m)).collect::<Vec<_>>().join(", ");
        match &self.methods {
            Some(ms) => format!("{} {}", methods(ms), quote(&self.pattern)),
            None if self.except.is_empty() => quote(&self.pattern),
            None => format!("{} (not {})", quote(&self.pattern), methods(&self.except)),
        }
    }

    fn json(&self) -> Value {
        json!({"pattern": self.pattern, "methods": self.methods, "except_methods": self.except})
    }
}

struct Row {
    bucket: Bucket,
    routes: Vec<RouteText>,
    /// Passed by every counted request first (Okta's concurrency limit).
    gate: bool,
}

/// One configuration's table.
pub struct Table {
    vendor: String,
    plan: String,
    edition: Option<Edition>,
    rows: Vec<Row>,
    exempt: Vec<RouteText>,
    status: Vec<RouteText>,
}

/// Adds `route` to `list`, merging methods with an entry at the same pattern.
fn add(list: &mut Vec<RouteText>, route: RouteText) {
    if let Some(same) = list.iter_mut().find(|r| r.pattern == route.pattern) {
        if let (Some(a), Some(b)) = (&mut same.methods, &route.methods) {
            for m in b {
                if !a.contains(m) {
                    a.push(m.clone());
                }
            }
            return;
        }
    }
    if !list.contains(&route) {
        list.push(route);
    }
}

pub fn table(bytes: &[u8]) -> Result<Table, Failure> {
    let refused = |e: String| Failure::Invalid(format!("configuration refused: {e}"));
    let configured = configure(bytes, KEY_PREFIX).map_err(|e| refused(e.to_string()))?;
    let policy = &configured.engine.policy;
    // The routes as configured, in the order the policy compiled them.
    let spec = idp_ratelimit::config::parse(bytes)
        .map_err(|e| refused(e.to_string()))?
        .policy;
    let mut rows: Vec<Row> = policy
        .buckets
        .iter()
        .enumerate()
        .map(|(i, b)| Row {
            bucket: b.clone(),
            routes: Vec::new(),
            gate: spec.gates.contains(&i),
        })
        .collect();
    let (mut exempt, mut status) = (Vec::new(), Vec::new());
    for (i, route) in spec.routes.iter().enumerate() {
        for pattern in &route.patterns {
            let Some(expanded) = expand(std::slice::from_ref(pattern))
                .ok()
                .and_then(|e| e.into_iter().next())
            else {
                continue;
            };
            let leads = |m: Option<&str>| policy.routes_at(m, &expanded).contains(&i);
            let text = match &route.methods {
                Some(ms) => {
                    let kept: Vec<String> = ms.iter().filter(|m| leads(Some(m))).cloned().collect();
                    if kept.is_empty() {
                        continue;
                    }
                    RouteText {
                        methods: Some(kept),
                        except: Vec::new(),
                        pattern: pattern.clone(),
                    }
                }
                None => {
                    let except: Vec<String> = KNOWN_METHODS
                        .iter()
                        .filter(|m| !leads(Some(m)))
                        .map(|m| m.to_string())
                        .collect();
                    if except.len() == KNOWN_METHODS.len() && !leads(None) {
                        continue;
                    }
                    RouteText {
                        methods: None,
                        except,
                        pattern: pattern.clone(),
                    }
                }
            };
            match &route.target {
                Target::Buckets(bs) => {
                    for &b in bs {
                        if let Some(row) = rows.get_mut(b) {
                            add(&mut row.routes, text.clone());
                        }
                    }
                }
                Target::Exempt => add(&mut exempt, text),
                Target::RateLimitStatus(_) => add(&mut status, text),
            }
        }
    }
    Ok(Table {
        vendor: configured.engine.vendor.clone(),
        plan: configured.plan,
        edition: configured.edition,
        rows,
        exempt,
        status,
    })
}

/// The plans `--plans all` means for the configuration's vendor.
pub fn all_plans(bytes: &[u8]) -> Result<Vec<String>, Failure> {
    use idp_ratelimit::catalog::{auth0, okta, onelogin};
    let plans: &[&str] = match edit::vendor(bytes).as_deref() {
        Some("okta") => &okta::PLANS,
        Some("auth0") => &auth0::PLANS,
        Some("onelogin") => &onelogin::PLANS,
        _ => {
            return Err(Failure::Usage(
                "--plans needs a configuration whose vendor is okta, auth0 or onelogin".into(),
            ))
        }
    };
    // An Auth0 edition without tables for a plan leaves that plan out.
    let edition = edit::edition(bytes).and_then(|e| Edition::from_name(&e));
    Ok(plans
        .iter()
        .filter(|p| edition.is_none_or(|e| e.has_plan(p)))
        .map(|p| p.to_string())
        .collect())
}

/// The tables of `bytes` with each of `plans` in turn (or as it is, with none).
pub fn tables(bytes: &[u8], plans: &[String]) -> Result<Vec<Table>, Failure> {
    if plans.is_empty() {
        return Ok(vec![table(bytes)?]);
    }
    plans
        .iter()
        .map(|p| {
            let b = edit::with_plan(bytes, p).ok_or_else(|| {
                Failure::Invalid(
                    "configuration refused: field `(document)`: not a JSON object".into(),
                )
            })?;
            table(&b)
        })
        .collect()
}

/// A route list for a table cell: `/x/*` stands for the routes it covers.
fn routes_cell(routes: &[RouteText], markdown: bool, gate: bool) -> String {
    let shown: Vec<&RouteText> = routes
        .iter()
        .filter(|r| !routes.iter().any(|c| c.covers(r)))
        .collect();
    let mut cell = shown
        .iter()
        .map(|r| {
            let under = routes.iter().filter(|o| r.covers(o)).count();
            match under {
                0 => r.text(markdown),
                n => format!("{} (+{n} under it)", r.text(markdown)),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    if cell.is_empty() {
        cell = match gate {
            true => "(every counted request)",
            false => "(no route)",
        }
        .to_string();
    }
    cell
}

/// Buckets by id across the tables, in first-seen order, with their limit
/// in each table (`None`: not in that plan).
fn merged(tables: &[Table]) -> Vec<(&Row, Vec<Option<Limit>>)> {
    let mut out: Vec<(&Row, Vec<Option<Limit>>)> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        for row in &table.rows {
            let at = match out.iter().position(|(r, _)| r.bucket.id == row.bucket.id) {
                Some(i) => i,
                None => {
                    out.push((row, vec![None; tables.len()]));
                    out.len() - 1
                }
            };
            if let Some(cell) = out.get_mut(at).and_then(|(_, cells)| cells.get_mut(t)) {
                *cell = Some(row.bucket.limit);
            }
        }
    }
    out
}

fn extra_routes(tables: &[Table], pick: fn(&Table) -> &Vec<RouteText>) -> Vec<RouteText> {
    let mut all = Vec::new();
    for t in tables {
        for r in pick(t) {
            add(&mut all, r.clone());
        }
    }
    all
}

pub enum Format {
    Text,
    Markdown,
    Json,
}

pub fn render(tables: &[Table], across_plans: bool, format: Format) -> Result<String, Failure> {
    let markdown = matches!(format, Format::Markdown);
    if let Format::Json = format {
        let one = |t: &Table| {
            let mut v = json!({
                "vendor": t.vendor,
                "plan": t.plan,
                "buckets": t.rows.iter().map(|r| {
                    let mut v = describe::bucket_json(&r.bucket, None);
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("routes".into(), r.routes.iter().map(RouteText::json).collect());
                    }
                    v
                }).collect::<Vec<_>>(),
                "exempt": t.exempt.iter().map(RouteText::json).collect::<Vec<_>>(),
                "answered_by_filter": t.status.iter().map(RouteText::json).collect::<Vec<_>>(),
            });
            if let (Some(e), Some(obj)) = (t.edition, v.as_object_mut()) {
                obj.insert("edition".into(), json!(e.name()));
            }
            v
        };
        let v = if across_plans {
            Value::Array(tables.iter().map(one).collect())
        } else {
            tables.first().map(one).unwrap_or(Value::Null)
        };
        return serde_json::to_string_pretty(&v)
            .map(|s| s + "\n")
            .map_err(|e| Failure::Invalid(e.to_string()));
    }
    let mut head: Vec<String> = vec!["row".into(), "bucket".into(), "routes".into()];
    if across_plans {
        head.extend(tables.iter().map(|t| t.plan.clone()));
    } else {
        head.push("limit".into());
    }
    head.extend(["algorithm".to_string(), "scope".to_string()]);
    let mut body: Vec<Vec<String>> = Vec::new();
    for (row, limits) in merged(tables) {
        let b = &row.bucket;
        let id = if markdown {
            format!("`{}`", b.id)
        } else {
            b.id.clone()
        };
        let mut cells = vec![
            b.label.clone(),
            id,
            routes_cell(&row.routes, markdown, row.gate),
        ];
        cells.extend(
            limits
                .iter()
                .map(|l| l.as_ref().map_or_else(|| "—".to_string(), describe::limit)),
        );
        cells.push(describe::algorithm(b.limit.algorithm).to_string());
        cells.push(describe::scope(&b.scope));
        body.push(cells);
    }
    let exempt = extra_routes(tables, |t| &t.exempt);
    let status = extra_routes(tables, |t| &t.status);
    let list = |rs: &[RouteText]| {
        rs.iter()
            .map(|r| r.text(markdown))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    if markdown {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&head));
        let limit_columns = head.len() - 5;
        let mut rule = vec!["---".to_string(); 3];
        rule.extend(vec!["---:".to_string(); limit_columns]);
        rule.extend(vec!["---".to_string(); 2]);
        out.push_str(&line(&rule));
        for cells in &body {
            out.push_str(&line(cells));
        }
    } else {
        let title = match tables {
            [t] => format!(
                "{}/{}: {}\n",
                t.vendor,
                describe::plan(&t.plan, t.edition),
                describe::count(t.rows.len(), "bucket")
            ),
            _ => format!(
                "{}{}, across plans: {}\n",
                tables.first().map_or("", |t| t.vendor.as_str()),
                tables
                    .first()
                    .and_then(|t| t.edition)
                    .filter(|e| *e != Edition::Seed2020)
                    .map_or(String::new(), |e| format!(", edition {}", e.name())),
                describe::count(body.len(), "bucket")
            ),
        };
        out.push_str(&title);
        let mut all = vec![head];
        all.extend(body);
        out.push_str(&describe::columns(&all));
    }
    if !exempt.is_empty() {
        out.push_str(&format!(
            "{}Never limited, no rate-limit headers: {}\n",
            if markdown { "\n" } else { "" },
            list(&exempt)
        ));
    }
    if !status.is_empty() {
        out.push_str(&format!(
            "{}Answered by the filter itself, not counted: {}\n",
            if markdown { "\n" } else { "" },
            list(&status)
        ));
    }
    Ok(out)
}
