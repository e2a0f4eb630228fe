//! Plain HTTP data exchanged between the core and the host. The host performs the I/O.

/// An HTTP request the core asks the host to send, or one the host intercepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    /// Header names are kept as given; look-ups are case-insensitive.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// An HTTP response: either one the host received, or a synthetic one the core builds for a caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Case-insensitive header look-up.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// A JSON response with `content-type: application/json`.
    pub fn json(status: u16, body: String) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    }
}
