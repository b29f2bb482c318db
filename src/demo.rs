//! The demo chat page (`--demo-dir`, issue 12): a directory of static text files served at
//! `/demo/`, read into memory once at start so that a request never blocks an executor on
//! the disk. Off by default; meant for trying the gateway and for the browser tests, not as
//! a web server (no ranges, no compression, no caching headers beyond `no-cache`).

use std::collections::HashMap;
use std::path::Path;

/// Most files and bytes read from the directory: a demo, not a site.
const MAX_FILES: usize = 256;
const MAX_BYTES: usize = 8 << 20;
const MAX_DEPTH: usize = 4;

/// The page's files, by path below `/demo/` (`index.html`, `client/index.js`, …).
#[derive(Debug)]
pub struct DemoFiles {
    files: HashMap<String, (&'static str, String)>,
}

impl DemoFiles {
    /// Reads every servable file under `dir`; a missing `index.html`, a non-UTF-8 text file or
    /// a directory over the limits is an error that names it.
    pub fn load(dir: &Path) -> Result<DemoFiles, String> {
        let mut files = HashMap::new();
        let mut bytes = 0;
        read_dir(dir, "", 0, &mut files, &mut bytes)?;
        if !files.contains_key("index.html") {
            return Err(format!("{} has no index.html", dir.display()));
        }
        Ok(DemoFiles { files })
    }

    /// The complete response for `path`, the request path after `/demo` (`""`, `/`, `/app.js`).
    pub fn respond(&self, path: &str) -> String {
        if path.is_empty() {
            return response(
                "301 Moved Permanently",
                "text/plain",
                "Location: /demo/\r\n",
                "/demo/\n",
            );
        }
        let key = match path.trim_start_matches('/') {
            "" => "index.html",
            p => p,
        };
        match self.files.get(key) {
            Some((kind, body)) => response("200 OK", kind, "Cache-Control: no-cache\r\n", body),
            None => response(
                "404 Not Found",
                "text/plain; charset=utf-8",
                "",
                "not found\n",
            ),
        }
    }
}

/// A complete response that closes the connection (the pod's HTTP is one request per
/// connection).
fn response(status: &str, kind: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

fn read_dir(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut HashMap<String, (&'static str, String)>,
    bytes: &mut usize,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || name == "node_modules" || name == "test" {
            continue;
        }
        if path.is_dir() {
            if depth < MAX_DEPTH {
                read_dir(&path, &format!("{prefix}{name}/"), depth + 1, files, bytes)?;
            }
            continue;
        }
        let Some(kind) = content_type(&name) else {
            continue;
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        *bytes += text.len();
        if files.len() >= MAX_FILES || *bytes > MAX_BYTES {
            return Err(format!("over {MAX_FILES} files or {MAX_BYTES} bytes"));
        }
        files.insert(format!("{prefix}{name}"), (kind, text));
    }
    Ok(())
}

/// Text types only: anything else in the directory is not served.
fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "map" => "application/json",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        dir
    }

    #[test]
    fn serves_the_index_nested_files_and_nothing_else() {
        let dir = dir_with(&[
            ("index.html", "<h1>hi</h1>"),
            ("client/index.js", "export {}"),
            ("secret.key", "nope"),
            ("test/demo.test.mjs", "nope"),
        ]);
        let demo = DemoFiles::load(dir.path()).unwrap();
        assert!(demo.respond("").starts_with("HTTP/1.1 301"));
        let index = demo.respond("/");
        assert!(index.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/html"));
        assert!(index.ends_with("\r\n\r\n<h1>hi</h1>"));
        let js = demo.respond("/client/index.js");
        assert!(js.contains("Content-Type: text/javascript"), "{js}");
        for hidden in [
            "/secret.key",
            "/test/demo.test.mjs",
            "/../Cargo.toml",
            "/nope.js",
        ] {
            assert!(demo.respond(hidden).starts_with("HTTP/1.1 404"), "{hidden}");
        }
    }

    #[test]
    fn a_directory_without_an_index_is_refused_by_name() {
        let dir = dir_with(&[("app.js", "")]);
        let err = DemoFiles::load(dir.path()).unwrap_err();
        assert!(err.contains("no index.html"), "{err}");
    }
}
