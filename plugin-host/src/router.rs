//! Matching a request's sub-path against the manifest's routes
//! (PLUGIN-ABI.md §4): `:name` matches one segment, `*name` the rest (last
//! segment only). When several routes match, the most specific wins:
//! fewer catch-alls, then more static segments, then fewer parameters, then
//! manifest order.

use std::collections::BTreeMap;

use crate::manifest::{Route, Step};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Static(String),
    Param(String),
    CatchAll(String),
}

#[derive(Debug, Clone)]
struct Compiled {
    index: usize,
    method: String,
    segments: Vec<Segment>,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Compiled>,
}

/// A matched route: its manifest index, middleware and path parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub index: usize,
    pub steps: Vec<Step>,
    pub params: BTreeMap<String, String>,
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl Router {
    pub fn new(routes: &[Route]) -> Result<Self, String> {
        let mut compiled = Vec::with_capacity(routes.len());
        for (index, route) in routes.iter().enumerate() {
            let method = route.method.to_ascii_uppercase();
            if !METHODS.contains(&method.as_str()) {
                return Err(format!(
                    "route {}: unknown method {:?}",
                    route.path, route.method
                ));
            }
            let parts: Vec<&str> = segments(&route.path).collect();
            let mut segs = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let seg = if let Some(name) = part.strip_prefix(':') {
                    Segment::Param(name.to_owned())
                } else if let Some(name) = part.strip_prefix('*') {
                    if i + 1 != parts.len() {
                        return Err(format!(
                            "route {}: a *catch-all must be the last segment",
                            route.path
                        ));
                    }
                    Segment::CatchAll(name.to_owned())
                } else {
                    Segment::Static((*part).to_owned())
                };
                segs.push(seg);
            }
            compiled.push(Compiled {
                index,
                method,
                segments: segs,
                steps: route.steps()?,
            });
        }
        // Most specific first; `sort_by_key` is stable, so manifest order
        // breaks ties.
        compiled.sort_by_key(|c| {
            let catch_alls = c
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::CatchAll(_)))
                .count();
            let statics = c
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Static(_)))
                .count();
            let params = c
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Param(_)))
                .count();
            (catch_alls, std::cmp::Reverse(statics), params)
        });
        Ok(Self { routes: compiled })
    }

    /// The route serving `method` on `path` (the sub-path after
    /// `/api/v1/plugins/<id>/`), or `None`.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched> {
        let parts: Vec<&str> = segments(path).collect();
        'routes: for route in &self.routes {
            if route.method != "ANY" && !route.method.eq_ignore_ascii_case(method) {
                continue;
            }
            let mut params = BTreeMap::new();
            let mut i = 0;
            for seg in &route.segments {
                match seg {
                    Segment::Static(s) => {
                        if parts.get(i) != Some(&s.as_str()) {
                            continue 'routes;
                        }
                    }
                    Segment::Param(name) => {
                        let Some(value) = parts.get(i) else {
                            continue 'routes;
                        };
                        params.insert(name.clone(), (*value).to_owned());
                    }
                    Segment::CatchAll(name) => {
                        params.insert(name.clone(), parts[i.min(parts.len())..].join("/"));
                        i = parts.len();
                        break;
                    }
                }
                i += 1;
            }
            if i != parts.len() {
                continue;
            }
            return Some(Matched {
                index: route.index,
                steps: route.steps.clone(),
                params,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            public: true,
            middlewares: None,
        }
    }

    #[test]
    fn specificity_and_params() {
        let router = Router::new(&[
            route("GET", "/files/*rest"),
            route("GET", "/projects/:projectId/items/:itemId"),
            route("GET", "/projects/:projectId/items/special"),
            route("POST", "/projects/:projectId/items"),
            route("ANY", "/hook"),
        ])
        .unwrap();
        let m = router.find("GET", "projects/p1/items/special").unwrap();
        assert_eq!(m.index, 2);
        let m = router.find("get", "/projects/p1/items/i9").unwrap();
        assert_eq!(m.index, 1);
        assert_eq!(m.params["projectId"], "p1");
        assert_eq!(m.params["itemId"], "i9");
        let m = router.find("GET", "files/a/b/c.txt").unwrap();
        assert_eq!(m.params["rest"], "a/b/c.txt");
        assert_eq!(router.find("GET", "files").unwrap().params["rest"], "");
        assert!(router.find("GET", "projects/p1/items").is_none());
        assert_eq!(router.find("POST", "projects/p1/items/").unwrap().index, 3);
        assert_eq!(router.find("DELETE", "hook").unwrap().index, 4);
        assert!(router.find("GET", "nothing/here").is_none());
        assert!(router.find("GET", "projects/p1/items/i9/extra").is_none());
    }
}
