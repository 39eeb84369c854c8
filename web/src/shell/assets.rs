//! Static files embedded in the binary at build time (`include_bytes!`), served under
//! `/static/<stem>.<hash>.<ext>` with a year-long immutable cache and gzip. The hash is
//! the first 12 hex digits of the file's SHA-256, so a new build never serves a stale
//! copy. Third-party files and their checksums are listed in `web/assets/MANIFEST.toml`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// Where static files are served; public without login.
pub const STATIC_PREFIX: &str = "/static/";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The name pages ask for, e.g. `panel.css`.
    pub name: &'static str,
    pub bytes: &'static [u8],
}

/// The shell's own files: its style sheet, script and icon, and uPlot.
pub const SHELL_ASSETS: &[Asset] = &[
    Asset {
        name: "panel.css",
        bytes: include_bytes!("../../assets/panel.css"),
    },
    Asset {
        name: "panel.js",
        bytes: include_bytes!("../../assets/panel.js"),
    },
    Asset {
        name: "favicon.svg",
        bytes: include_bytes!("../../assets/favicon.svg"),
    },
    Asset {
        name: "uPlot.min.css",
        bytes: include_bytes!("../../assets/vendor/uPlot.min.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        bytes: include_bytes!("../../assets/vendor/uPlot.iife.min.js"),
    },
];

struct Served {
    content_type: &'static str,
    bytes: &'static [u8],
    gzip: Option<Vec<u8>>,
}

/// A set of embedded files by their hashed URL. Build it once at start.
pub struct Assets {
    by_file: HashMap<String, Served>,
    urls: HashMap<&'static str, String>,
}

impl std::fmt::Debug for Assets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assets").field("urls", &self.urls).finish()
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

fn hashed_file(name: &str, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{name}.{hash}"),
    }
}

impl Assets {
    /// The files of every list (later lists may not repeat a name).
    pub fn new(lists: &[&'static [Asset]]) -> Assets {
        let mut by_file = HashMap::new();
        let mut urls = HashMap::new();
        for asset in lists.iter().flat_map(|l| l.iter()) {
            let file = hashed_file(asset.name, asset.bytes);
            let content_type = content_type(asset.name);
            // Text compresses well; images are compressed already.
            let compress = content_type.starts_with("text/") || content_type.contains("svg");
            urls.insert(asset.name, format!("{STATIC_PREFIX}{file}"));
            by_file.insert(
                file,
                Served {
                    content_type,
                    bytes: asset.bytes,
                    gzip: if compress { gzip(asset.bytes) } else { None },
                },
            );
        }
        Assets { by_file, urls }
    }

    /// The URL of the file named `name`; an unknown name is a programming error, shown
    /// as a URL that answers 404 rather than a panic.
    pub fn url(&self, name: &str) -> String {
        self.urls
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("{STATIC_PREFIX}unknown/{name}"))
    }

    /// The size the file at `url` is sent with to a client accepting gzip.
    pub fn transfer_size(&self, url: &str) -> Option<usize> {
        let served = self.by_file.get(url.strip_prefix(STATIC_PREFIX)?)?;
        Some(served.gzip.as_ref().map_or(served.bytes.len(), Vec::len))
    }

    /// `GET /static/{file}`.
    pub fn routes<S: Clone + Send + Sync + 'static>(self: Arc<Self>) -> Router<S> {
        Router::new()
            .route(&format!("{STATIC_PREFIX}{{file}}"), get(serve))
            .with_state(self)
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            (name == "gzip" || name == "*") && !refused
        })
}

async fn serve(
    State(assets): State<Arc<Assets>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(served) = assets.by_file.get(&file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut response = match &served.gzip {
        Some(gz) if accepts_gzip(&headers) => {
            let mut r = gz.clone().into_response();
            r.headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        _ => served.bytes.into_response(),
    };
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(served.content_type));
    // The hash is in the URL: the content never changes under it.
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file `MANIFEST.toml` lists has the recorded SHA-256.
    #[test]
    fn assets_match_their_manifest() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let manifest = std::fs::read_to_string(dir.join("MANIFEST.toml")).unwrap();
        let mut checked = 0;
        let mut path = None;
        for line in manifest.lines() {
            let value = |l: &str| {
                l.split_once('=')
                    .map(|(_, v)| v.trim().trim_matches('"').to_owned())
            };
            if line.starts_with("path") {
                path = value(line);
            } else if line.starts_with("sha256") {
                let file = path.take().expect("path before sha256");
                let bytes = std::fs::read(dir.join(&file)).unwrap();
                let actual: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(Some(actual), value(line), "{file}");
                checked += 1;
            }
        }
        assert_eq!(checked, 3);
    }

    #[test]
    fn urls_carry_the_content_hash() {
        let assets = Assets::new(&[SHELL_ASSETS]);
        let url = assets.url("panel.css");
        assert!(
            url.starts_with("/static/panel.") && url.ends_with(".css"),
            "{url}"
        );
        assert_eq!(url.len(), "/static/panel..css".len() + 12);
        assert!(assets.transfer_size(&url).unwrap() < SHELL_ASSETS[0].bytes.len());
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(ACCEPT_ENCODING, HeaderValue::from_static(v));
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, gzip;q=0.8")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
