//! SPDY/3's header compression dictionary (draft-mbelshe-httpbis-spdy-00,
//! section 2.6.10.1): the header names it lists, each with a 4-byte big-endian
//! length, then common values run together. Both ends prime zlib with it.

/// The header names, in the specification's order.
const NAMES: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The values, run together.
const VALUES: &str = concat!(
    "10010120120220520630030230330430530630740240540640740840941041141241341441541641",
    "7502504505203 Non-Authoritative Information204 No Content301 Moved ",
    "Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal",
    " Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun ",
    "Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,",
    "text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,te",
    "xt/plain,text/javascript,publicprivatemax-",
    "age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The dictionary's bytes.
pub fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for name in NAMES {
        d.extend_from_slice(&(name.len() as u32).to_be_bytes());
        d.extend_from_slice(name.as_bytes());
    }
    d.extend_from_slice(VALUES.as_bytes());
    d
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dictionary_is_the_specifications() {
        let d = super::dictionary();
        assert_eq!(d.len(), 1423);
        // zlib names a preset dictionary by its Adler-32; SPDY/3 peers send this one.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in &d {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }
}
