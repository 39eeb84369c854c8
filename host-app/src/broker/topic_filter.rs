//! MQTT topic filters as access rules use them: is a filter well formed, and does a
//! granted filter cover a topic name or a whole subscription filter.

/// Why a topic filter is not valid MQTT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("is empty")]
    Empty,
    #[error("'#' must be the last level, alone")]
    MultiLevel,
    #[error("'+' must fill a whole level")]
    SingleLevel,
    #[error("holds a NUL character")]
    Nul,
    #[error("is longer than MQTT's 65535 bytes")]
    TooLong,
}

/// Checks a topic filter (MQTT 3.1.1 4.7): `#` only as the whole last level, `+` only as
/// a whole level, no NUL.
pub fn validate(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    if filter.len() > 65_535 {
        return Err(FilterError::TooLong);
    }
    if filter.contains('\0') {
        return Err(FilterError::Nul);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(FilterError::MultiLevel);
        }
        if level.contains('+') && level != "+" {
            return Err(FilterError::SingleLevel);
        }
    }
    Ok(())
}

/// Is `name` a topic name a client may publish to (no wildcards, not empty)?
pub fn is_topic_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', '#', '\0'])
}

/// Does `granted` cover every topic that `wanted` can match? `wanted` is a topic name or
/// a subscription filter; a `+` or `#` in it is covered only by a wildcard at least as wide
/// in `granted`. A filter starting with a wildcard never covers a topic starting with `$`
/// (MQTT 3.1.1 4.7.2).
pub fn covers(granted: &str, wanted: &str) -> bool {
    let mut granted_levels = granted.split('/');
    let mut wanted_levels = wanted.split('/');
    let mut first = true;
    loop {
        match (granted_levels.next(), wanted_levels.next()) {
            (Some("#"), Some(w)) => return !(first && w.starts_with('$')),
            // `a/#` also matches `a` itself.
            (Some("#"), None) => return true,
            (Some("+"), Some(w)) => {
                if w == "#" || (first && w.starts_with('$')) {
                    return false;
                }
            }
            (Some(g), Some(w)) => {
                if g != w {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_topic_names_as_mqtt_matches_them() {
        for (granted, topic, expected) in [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/+/c", "a//c", true),
            ("a/b", "a/b/", false),
        ] {
            assert_eq!(covers(granted, topic), expected, "{granted} covers {topic}");
        }
    }

    #[test]
    fn covers_filters_only_when_every_match_is_covered() {
        for (granted, wanted, expected) in [
            ("a/+", "a/+", true),
            ("a/#", "a/+", true),
            ("a/#", "a/#", true),
            ("a/+", "a/#", false),
            ("a/b", "a/+", false),
            ("a/+/c", "a/+/#", false),
            ("#", "#", true),
            ("+", "#", false),
            ("a/b/#", "a/#", false),
        ] {
            assert_eq!(
                covers(granted, wanted),
                expected,
                "{granted} covers {wanted}"
            );
        }
    }

    #[test]
    fn validates_wildcard_placement() {
        assert_eq!(validate("a/#"), Ok(()));
        assert_eq!(validate("+/b/+"), Ok(()));
        assert_eq!(validate("#"), Ok(()));
        assert_eq!(validate(""), Err(FilterError::Empty));
        assert_eq!(validate("a/#/b"), Err(FilterError::MultiLevel));
        assert_eq!(validate("a#"), Err(FilterError::MultiLevel));
        assert_eq!(validate("a/b+"), Err(FilterError::SingleLevel));
        assert_eq!(validate("a\0"), Err(FilterError::Nul));
        assert!(is_topic_name("a/b"));
        assert!(!is_topic_name("a/+"));
        assert!(!is_topic_name(""));
    }
}
