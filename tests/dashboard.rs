//! The Grafana dashboard (deploy/grafana/distrisocks.json) is built on metrics the pod really
//! exports: every query names a family `GET /metrics` declares, and the layout is sound.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// Families only a distributed pod exports (tests/cluster_api.rs checks them there).
const DISTRIBUTED_ONLY: [&str; 1] = ["distrisocks_kafka_produce_seconds"];

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/distrisocks.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON")
}

/// `distrisocks_…` names in a PromQL expression, histogram series named by their family.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("distrisocks_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        names.push(name.strip_suffix("_bucket").unwrap_or(name).to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let dir = tempfile::tempdir().unwrap();
    let pod = start_pod(dir.path(), |_| {});
    let addr = pod.local_addr();
    let (mut alice, mut bob) = pair(addr, addr);
    send_and_confirm(&mut alice, &mut bob, "for the histograms");
    let text = raw(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let exported: BTreeSet<&str> = (text.lines())
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .chain(DISTRIBUTED_ONLY)
        .collect();
    let dash = dashboard();
    let panels = dash["panels"].as_array().expect("panels");
    let mut named = 0;
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = names_in(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    exported.contains(name.as_str()),
                    "{name} is not exported ({expr})"
                );
                named += 1;
            }
        }
    }
    assert!(named >= 10, "{named}");
    pod.shutdown();
}

#[test]
fn panels_have_unique_ids_and_do_not_overlap() {
    let dash = dashboard();
    let panels = dash["panels"].as_array().unwrap();
    let ids: BTreeSet<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len());
    let cells = |p: &Value| {
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_i64().unwrap());
        assert!(x + w <= 24, "{} is wider than the grid", p["title"]);
        (x..x + w).flat_map(move |c| (y..y + h).map(move |r| (c, r)))
    };
    let mut taken = BTreeSet::new();
    for p in panels {
        for cell in cells(p) {
            assert!(taken.insert(cell), "{} overlaps another panel", p["title"]);
        }
    }
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(vars
        .iter()
        .any(|v| v["name"] == "datasource" && v["type"] == "datasource"));
}

#[test]
fn the_name_extractor_finds_families() {
    let expr = "histogram_quantile(0.9, sum by (le) (rate(distrisocks_x_seconds_bucket{a=\"b\"}[1m]))) / distrisocks_y_total";
    assert_eq!(
        names_in(expr),
        ["distrisocks_x_seconds", "distrisocks_y_total"]
    );
}
