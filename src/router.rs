//! Method-aware path routing on `matchit`, most specific route first.
//!
//! Patterns use matchit's syntax (`{id}` one segment, `{*rest}` the rest) and
//! one shorthand: a trailing `/*` means the path itself and everything under
//! it (`/api/v1/apps/*` is `/api/v1/apps` and `/api/v1/apps/{*rest}`).
//!
//! matchit refuses a parameter and a catch-all at the same position in one
//! router, so patterns go into as many layers as needed and every layer is
//! asked; among the matches, the most specific wins: segments compare left to
//! right, literal over parameter over catch-all. A method that no route names
//! at the most specific pattern falls through to the next pattern that
//! accepts it (each method has its own layers).

use std::collections::HashMap;

/// Methods that get routers of their own; any other method only sees routes
/// that accept every method.
/// (Also the methods an operator's route may name.)
pub const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

/// A route as configured: which methods (`None`: all), which patterns, and
/// what it leads to (an index the caller gives meaning to).
#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub methods: Option<Vec<String>>,
    pub patterns: Vec<String>,
    pub target: usize,
    /// Replace the targets already routed at the same pattern (operator
    /// overrides) rather than add to them.
    pub replace: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub pattern: String,
    pub reason: String,
}

/// Everything routed to one pattern for one method: the targets of every
/// route that named it (several when catalogs overlap).
struct Entry {
    score: Vec<u8>,
    targets: Vec<usize>,
    /// Set by an override: later catalog routes no longer add to it.
    replaced: bool,
}

#[derive(Default)]
struct MethodRouter {
    layers: Vec<matchit::Router<usize>>,
    entries: Vec<Entry>,
    by_pattern: HashMap<String, usize>,
}

impl MethodRouter {
    fn add(&mut self, pattern: &str, target: usize, replace: bool) -> Result<(), RouteError> {
        if let Some(&i) = self.by_pattern.get(pattern) {
            let entry = &mut self.entries[i];
            if replace && !entry.replaced {
                entry.targets.clear();
                entry.replaced = true;
            }
            if (replace || !entry.replaced) && !entry.targets.contains(&target) {
                entry.targets.push(target);
            }
            return Ok(());
        }
        let index = self.entries.len();
        let placed = self
            .layers
            .iter_mut()
            .any(|layer| layer.insert(pattern, index).is_ok());
        if !placed {
            let mut layer = matchit::Router::new();
            layer.insert(pattern, index).map_err(|e| RouteError {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })?;
            self.layers.push(layer);
        }
        self.entries.push(Entry {
            score: specificity(pattern),
            targets: vec![target],
            replaced: replace,
        });
        self.by_pattern.insert(pattern.to_string(), index);
        Ok(())
    }

    fn lookup(&self, path: &str) -> Option<(usize, &Entry)> {
        self.layers
            .iter()
            .filter_map(|layer| layer.at(path).ok().map(|m| *m.value))
            .filter_map(|i| self.entries.get(i).map(|e| (i, e)))
            .max_by(|a, b| a.1.score.cmp(&b.1.score))
    }

    /// The pattern of entry `index` (a search: for tools, not requests).
    fn pattern(&self, index: usize) -> &str {
        self.by_pattern
            .iter()
            .find(|(_, &i)| i == index)
            .map_or("", |(p, _)| p.as_str())
    }
}

/// Routes compiled for lookup.
pub struct Router {
    /// One table per `KNOWN_METHODS` entry, in its order: found by a scan
    /// of nine names, cheaper than hashing the method (SipHash, in wasm).
    by_method: [MethodRouter; KNOWN_METHODS.len()],
    other: MethodRouter,
}

impl Router {
    pub fn new(routes: &[RouteSpec]) -> Result<Router, RouteError> {
        let mut router = Router {
            by_method: std::array::from_fn(|_| MethodRouter::default()),
            other: MethodRouter::default(),
        };
        for route in routes {
            let patterns = expand(&route.patterns)?;
            for pattern in &patterns {
                for (method, table) in KNOWN_METHODS.iter().zip(router.by_method.iter_mut()) {
                    let accepts = route
                        .methods
                        .as_ref()
                        .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)));
                    if accepts {
                        table.add(pattern, route.target, route.replace)?;
                    }
                }
                if route.methods.is_none() {
                    router.other.add(pattern, route.target, route.replace)?;
                }
            }
        }
        Ok(router)
    }

    /// Targets of the most specific route for this method and normalised
    /// path, or `None` when no route matches.
    pub fn lookup(&self, method: &str, path: &str) -> Option<&[usize]> {
        self.table(Some(method))
            .lookup(path)
            .map(|(_, e)| e.targets.as_slice())
    }

    /// Like `lookup`, with the (expanded) pattern that matched.
    pub fn lookup_route(&self, method: &str, path: &str) -> Option<(&str, &[usize])> {
        let table = self.table(Some(method));
        table
            .lookup(path)
            .map(|(i, e)| (table.pattern(i), e.targets.as_slice()))
    }

    /// The targets routed at exactly `pattern` (expanded) for `method`
    /// (`None`: a method no route names), after overrides replaced.
    pub fn routed_at(&self, method: Option<&str>, pattern: &str) -> Option<&[usize]> {
        let table = self.table(method);
        let &i = table.by_pattern.get(pattern)?;
        table.entries.get(i).map(|e| e.targets.as_slice())
    }

    fn table(&self, method: Option<&str>) -> &MethodRouter {
        method
            .and_then(|method| {
                KNOWN_METHODS
                    .iter()
                    .position(|m| m.eq_ignore_ascii_case(method))
                    .and_then(|i| self.by_method.get(i))
            })
            .unwrap_or(&self.other)
    }
}

/// Checks that `patterns` can be routed (their form, and matchit's syntax)
/// without building a `Router`: the configuration asks, to name the field.
pub(crate) fn check_patterns(patterns: &[String]) -> Result<(), RouteError> {
    let mut table = MethodRouter::default();
    for p in expand(patterns)? {
        table.add(&p, 0, false)?;
    }
    Ok(())
}

/// Expands the trailing `/*` shorthand and checks each pattern's form.
pub fn expand(patterns: &[String]) -> Result<Vec<String>, RouteError> {
    let mut out = Vec::new();
    for p in patterns {
        let err = |reason: &str| RouteError {
            pattern: p.clone(),
            reason: reason.to_string(),
        };
        if !p.starts_with('/') {
            return Err(err("must start with '/'"));
        }
        if p.contains("//") || p.contains('?') || p.contains('#') {
            return Err(err("must be a normalised path: no '//', '?' or '#'"));
        }
        match p.strip_suffix("/*") {
            Some(base) => {
                let base = if base.is_empty() { "/" } else { base };
                out.push(base.to_string());
                out.push(format!("{}/{{*rest}}", base.trim_end_matches('/')));
            }
            None => out.push(p.clone()),
        }
    }
    Ok(out)
}

/// Orders patterns: segment by segment, literal (3) beats parameter (2)
/// beats catch-all (1); a pattern that ends first loses a tie.
fn specificity(pattern: &str) -> Vec<u8> {
    pattern
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with("{*") {
                1
            } else if s.starts_with('{') {
                2
            } else {
                3
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(methods: Option<&[&str]>, patterns: &[&str], target: usize) -> RouteSpec {
        RouteSpec {
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            target,
            replace: false,
        }
    }

    fn router() -> Router {
        Router::new(&[
            spec(None, &["/api/v1/*"], 0),
            spec(None, &["/api/v1/apps/*"], 1),
            spec(None, &["/api/v1/apps/{id}"], 2),
            spec(Some(&["GET", "POST"]), &["/api/v1/users"], 3),
            spec(Some(&["GET"]), &["/api/v1/users/{idOrLogin}"], 4),
            spec(Some(&["POST", "PUT", "DELETE"]), &["/api/v1/users/{id}"], 5),
            spec(None, &["/oauth2/*"], 6),
            spec(None, &["/oauth2/{as}/v1/*"], 7),
            spec(None, &["/oauth2/v1/*"], 8),
            spec(None, &["/oauth2/{as}/v1/keys", "/oauth2/v1/keys"], 9),
            spec(None, &["/api/v1/*"], 10),
        ])
        .unwrap()
    }

    #[test]
    fn most_specific_wins() {
        let r = router();
        let cases: &[(&str, &str, Option<&[usize]>)] = &[
            ("GET", "/api/v1/apps", Some(&[1])),
            ("GET", "/api/v1/apps/0oa1", Some(&[2])),
            ("DELETE", "/api/v1/apps/0oa1", Some(&[2])),
            ("GET", "/api/v1/apps/0oa1/users", Some(&[1])),
            ("GET", "/api/v1/users", Some(&[3])),
            ("POST", "/api/v1/users", Some(&[3])),
            ("PUT", "/api/v1/users", Some(&[0, 10])),
            ("GET", "/api/v1/users/00u1", Some(&[4])),
            ("PUT", "/api/v1/users/00u1", Some(&[5])),
            ("PATCH", "/api/v1/users/00u1", Some(&[0, 10])),
            ("PROPFIND", "/api/v1/users/00u1", Some(&[0, 10])),
            ("get", "/api/v1/users/00u1", Some(&[4])),
            ("GET", "/api/v1/users/00u1/groups", Some(&[0, 10])),
            ("GET", "/api/v1", Some(&[0, 10])),
            ("POST", "/oauth2/v1/token", Some(&[8])),
            ("GET", "/oauth2/v1/keys", Some(&[9])),
            ("GET", "/oauth2/default/v1/keys", Some(&[9])),
            ("POST", "/oauth2/default/v1/token", Some(&[7])),
            ("GET", "/oauth2/default/other", Some(&[6])),
            ("GET", "/oauth2", Some(&[6])),
            ("GET", "/", None),
            ("GET", "/api", None),
            ("GET", "/api/v2/users", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(r.lookup(method, path), *want, "{method} {path}");
        }
    }

    #[test]
    fn overrides_replace_catalog_routes_at_their_pattern() {
        let mut o = spec(Some(&["GET"]), &["/api/v1/users"], 20);
        o.replace = true;
        let r = Router::new(&[
            spec(None, &["/api/v1/*"], 0),
            spec(Some(&["GET", "POST"]), &["/api/v1/users"], 3),
            o,
        ])
        .unwrap();
        assert_eq!(r.lookup("GET", "/api/v1/users"), Some(&[20][..]));
        assert_eq!(r.lookup("POST", "/api/v1/users"), Some(&[3][..]));
        // What `idp-ratelimit routes` asks: who still leads from a pattern.
        assert_eq!(r.routed_at(Some("GET"), "/api/v1/users"), Some(&[20][..]));
        assert_eq!(r.routed_at(Some("post"), "/api/v1/users"), Some(&[3][..]));
        assert_eq!(r.routed_at(None, "/api/v1/users"), None);
        assert_eq!(r.routed_at(None, "/api/v1/{*rest}"), Some(&[0][..]));
    }

    #[test]
    fn lookup_route_names_the_pattern_that_matched() {
        let r = router();
        let cases = [
            ("GET", "/api/v1/apps", Some("/api/v1/apps")),
            (
                "GET",
                "/api/v1/apps/0oa1/users",
                Some("/api/v1/apps/{*rest}"),
            ),
            ("PATCH", "/api/v1/users/00u1", Some("/api/v1/{*rest}")),
            ("PROPFIND", "/oauth2/v1/keys", Some("/oauth2/v1/keys")),
            ("GET", "/", None),
        ];
        for (method, path, want) in cases {
            let got = r.lookup_route(method, path);
            assert_eq!(got.map(|(p, _)| p), want, "{method} {path}");
            assert_eq!(
                got.map(|(_, t)| t),
                r.lookup(method, path),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in ["api/v1", "/a//b", "/a?x", "/a/{*rest}/b", "/a/{"] {
            let err = Router::new(&[spec(None, &[bad], 0)]).err();
            assert_eq!(err.map(|e| e.pattern), Some(bad.to_string()), "{bad}");
        }
    }
}
