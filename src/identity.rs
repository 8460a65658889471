//! Who a request counts against: the org from `:authority`, the client from
//! Envoy's `source.address`, the user from a bearer JWT. Only trusted inputs;
//! never a forwarded-for header.

/// The org/tenant/account: `:authority` lower-cased, port and trailing dot
/// stripped (`Acme.okta.com:443` and `acme.okta.com.` are `acme.okta.com`).
pub fn host_key(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        // IPv6 literal: keep what is inside the brackets.
        rest.split_once(']').map_or(rest, |(inside, _)| inside)
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The client address from Envoy's `source.address` (`1.2.3.4:5678`,
/// `[2001:db8::1]:5678`), without its port.
pub fn address_without_port(address: &str) -> String {
    let a = address.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest
            .split_once(']')
            .map_or(rest, |(inside, _)| inside)
            .to_ascii_lowercase();
    }
    match a.rsplit_once(':') {
        // One colon: IPv4 with a port. More than one: a bare IPv6 address.
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            ip.to_string()
        }
        _ => a.to_ascii_lowercase(),
    }
}

/// The `sub` of a bearer JWT whose scopes contain `scope_part` (as Auth0's
/// SPA tokens carry `read:current_user` and the like). The token is decoded,
/// not verified: signature checks belong to Envoy's `jwt_authn` filter,
/// placed before this one. Anything malformed gives `None`.
pub fn jwt_subject_with_scope(authorization: &str, scope_part: &str) -> Option<String> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut parts = token.trim().split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?; // a signature part must be there, even if unchecked
    let bytes = base64url_decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let has_scope = match claims.get("scope") {
        Some(serde_json::Value::String(s)) => s.split(' ').any(|sc| sc.contains(scope_part)),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .any(|sc| sc.contains(scope_part)),
        _ => false,
    };
    let sub = claims.get("sub")?.as_str()?;
    (has_scope && !sub.is_empty()).then(|| sub.to_string())
}

/// The raw value of the first `name` parameter in a path's query string.
pub fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let query = path.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The value of cookie `name` (ASCII case-insensitive) in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Who an Okta management call is made by: an API token (`SSWS <token>`),
/// kept only as a hash (so no token reaches a log line), or an OAuth 2.0
/// client, the `cid` or `client_id` claim of a bearer (or DPoP) JWT, decoded,
/// not verified (as for Auth0's SPA tokens). `None` when neither is there.
///
/// Okta's Python SDK 3.4.6 sends `SSWS<token>` with no space (its
/// `Configuration.auth_settings` joins the two without one), so the space
/// after `SSWS` is optional.
pub fn okta_principal(authorization: &str) -> Option<String> {
    let auth = authorization.trim();
    if let Some(token) = auth
        .get(..4)
        .filter(|s| s.eq_ignore_ascii_case("ssws"))
        .and_then(|_| auth.get(4..))
    {
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        let hash = crate::hash::fingerprint(&[b"ssws", token.as_bytes()]);
        return Some(format!("token:{hash:016x}"));
    }
    let (scheme, credential) = auth.split_once(' ')?;
    let credential = credential.trim();
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop")) {
        return None;
    }
    let mut parts = credential.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?;
    let claims: serde_json::Value = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
    let client = ["cid", "client_id"]
        .iter()
        .find_map(|c| claims.get(*c)?.as_str().filter(|v| !v.is_empty()))?;
    Some(format!("client:{client}"))
}

/// The user a bearer token stands for: a JWT's `sub` (decoded, not
/// verified), else the opaque token itself, kept only as a hash.
pub fn bearer_user(authorization: &str) -> Option<String> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return None;
    }
    let mut parts = token.split('.');
    let sub = match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_)) => base64url_decode(payload)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|c| c.get("sub")?.as_str().map(str::to_string))
            .filter(|s| !s.is_empty()),
        _ => None,
    };
    Some(match sub {
        Some(sub) => format!("sub:{sub}"),
        None => format!(
            "token:{:016x}",
            crate::hash::fingerprint(&[b"bearer", token.as_bytes()])
        ),
    })
}

/// Base64url without padding (padding tolerated). `None` on a bad character.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() > 64 * 1024 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys() {
        assert_eq!(host_key("Acme.Okta.com"), "acme.okta.com");
        assert_eq!(host_key("acme.okta.com:443"), "acme.okta.com");
        assert_eq!(host_key("acme.okta.com."), "acme.okta.com");
        assert_eq!(host_key("[2001:DB8::1]:8443"), "2001:db8::1");
        assert_eq!(host_key("[::1]"), "::1");
        assert_eq!(host_key("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(host_key(""), "");
        assert_eq!(host_key("weird:port"), "weird:port");
    }

    #[test]
    fn client_addresses() {
        assert_eq!(address_without_port("10.1.2.3:55012"), "10.1.2.3");
        assert_eq!(address_without_port("[2001:db8::7]:55012"), "2001:db8::7");
        assert_eq!(address_without_port("2001:db8::7"), "2001:db8::7");
        assert_eq!(address_without_port("10.1.2.3"), "10.1.2.3");
    }

    fn token(claims: &str) -> String {
        format!(
            "Bearer {}.{}.sig",
            crate::test_base64url::encode(b"{\"alg\":\"RS256\"}"),
            crate::test_base64url::encode(claims.as_bytes())
        )
    }

    #[test]
    fn query_params_and_cookies() {
        let p = "/oauth2/v1/authorize?response_type=code&client_id=0oa1&state=x#f";
        assert_eq!(query_param(p, "client_id"), Some("0oa1"));
        assert_eq!(query_param(p, "state"), Some("x"));
        assert_eq!(query_param(p, "nonce"), None);
        assert_eq!(query_param("/a?flag&client_id=", "client_id"), Some(""));
        assert_eq!(query_param("/a", "client_id"), None);
        assert_eq!(cookie("sid=1; DT=abc ; x=2", "dt"), Some("abc"));
        assert_eq!(cookie("dt=d1", "DT"), Some("d1"));
        assert_eq!(cookie("sid=1", "dt"), None);
    }

    #[test]
    fn bearer_users() {
        assert_eq!(
            bearer_user(&token(r#"{"sub":"auth0|u1"}"#)),
            Some("sub:auth0|u1".into())
        );
        let opaque = bearer_user("Bearer opaque-token-1").unwrap();
        assert!(opaque.starts_with("token:") && !opaque.contains("opaque"));
        assert_ne!(bearer_user("Bearer opaque-token-2"), Some(opaque));
        assert_eq!(bearer_user("Basic x"), None);
        assert_eq!(bearer_user("Bearer "), None);
    }

    #[test]
    fn okta_principals() {
        let a = okta_principal("SSWS 00abcDEF").unwrap();
        assert!(a.starts_with("token:") && !a.contains("00abcDEF"), "{a}");
        assert_eq!(okta_principal("ssws 00abcDEF"), Some(a.clone()));
        assert_eq!(
            okta_principal("SSWS00abcDEF"),
            Some(a.clone()),
            "as Okta's SDK sends it"
        );
        assert_ne!(okta_principal("SSWS 00other"), Some(a));
        assert_eq!(
            okta_principal(&token(r#"{"cid":"0oa1","sub":"x"}"#)),
            Some("client:0oa1".into())
        );
        assert_eq!(
            okta_principal(&token(r#"{"client_id":"0oa2"}"#)),
            Some("client:0oa2".into())
        );
        for none in [
            "",
            "SSWS ",
            "Basic abc",
            "Bearer x.y",
            &token(r#"{"sub":"u"}"#),
        ] {
            assert_eq!(okta_principal(none), None, "{none}");
        }
    }

    #[test]
    fn spa_tokens() {
        let t = token(r#"{"sub":"auth0|u1","scope":"openid read:current_user"}"#);
        assert_eq!(
            jwt_subject_with_scope(&t, "current_user").as_deref(),
            Some("auth0|u1")
        );
        let arr = token(r#"{"sub":"u2","scope":["update:current_user_metadata"]}"#);
        assert_eq!(
            jwt_subject_with_scope(&arr, "current_user").as_deref(),
            Some("u2")
        );
        let m2m = token(r#"{"sub":"client@clients","scope":"read:users"}"#);
        assert_eq!(jwt_subject_with_scope(&m2m, "current_user"), None);
        for bad in [
            "",
            "Bearer",
            "Basic abc",
            "Bearer a.b",
            "Bearer !!!.@@@.x",
            "Bearer e30.e30.x",
            &token(r#"{"scope":"read:current_user"}"#),
            &token(r#"{"sub":5,"scope":"read:current_user"}"#),
            &token("not json"),
        ] {
            assert_eq!(jwt_subject_with_scope(bad, "current_user"), None, "{bad}");
        }
    }
}
